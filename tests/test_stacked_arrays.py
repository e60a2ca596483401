"""A state archive's many small arrays are stored as a few groups and come back bit for bit: names, dtypes,
shapes (0-d and empty included), signed zeros and NaNs; archives written one array per member still read."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipelines.stacked_arrays import GROUPED_BYTES, stack_arrays, unstack_arrays

DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.int8, np.bool_])
LEAVES = st.sampled_from(["t0/keys", "t0/counts", "t1/0", "t1/1~at", "t2/sums"])


@st.composite
def archives(draw) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for _ in range(draw(st.integers(0, 40))):
        letter = draw(st.sampled_from("sb"))
        name = f"{letter}{draw(st.integers(0, 30))}/{draw(LEAVES)}"
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        arrays[name] = draw(hnp.arrays(draw(DTYPES), shape))  # any bit patterns
    for name in draw(st.lists(st.sampled_from(["header", "scores", "s/x", "sx/y", "s1"]), unique=True)):
        arrays[name] = np.arange(3)  # names outside the groups' pattern are stored as they are
    return arrays


def _npz_round_trip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with np.load(io.BytesIO(buffer.getvalue())) as data:
        return {k: data[k] for k in data.files}


@settings(max_examples=150, deadline=None)
@given(archives(), st.booleans())
def test_stacked_arrays_come_back_bit_for_bit(arrays: dict[str, np.ndarray], planes: bool) -> None:
    stacked = stack_arrays(arrays, planes=planes)
    back = unstack_arrays(_npz_round_trip(stacked))
    assert sorted(back) == sorted(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        assert back[name].tobytes() == array.tobytes(), name


def test_like_arrays_of_many_slices_become_three_arrays_and_unlike_ones_stay_apart() -> None:
    arrays = {f"s{s}/t0/keys": np.arange(s, dtype=np.int64) for s in range(1000)}
    arrays |= {"s0/t1/x": np.zeros(2), "s1/t1/x": np.zeros(2, np.float32)}  # two dtypes: kept one by one
    arrays["b3/t0/keys"] = np.ones((2, 2))  # alone in its group
    arrays |= {f"b{s}/t1/hi": np.full(GROUPED_BYTES // 8 + 1, np.inf) for s in range(3)}  # large: kept as they are
    stacked = stack_arrays(arrays)
    group = ["s*/t0/keys~planes", "s*/t0/keys~dtype", "s*/t0/keys~shapes", "s*/t0/keys~members"]
    assert sorted(stacked) == sorted([*group, "s0/t1/x", "s1/t1/x", "b3/t0/keys", "b0/t1/hi", "b1/t1/hi", "b2/t1/hi"])
    assert stacked["s*/t0/keys~planes"].shape == (8, sum(range(1000)))  # the bytes of each place of the int64s
    assert stacked["s*/t0/keys~planes"][7:].max() == 0  # (a plane of zeros: what deflate packs best)
    assert unstack_arrays(dict(stack_arrays({}))) == {}


def test_an_archive_of_one_array_per_member_reads_unchanged() -> None:
    arrays = {"s0/t0/keys": np.arange(4), "s1/t0/keys": np.arange(2), "s0/t1/0": np.float64(1.5)}
    back = unstack_arrays(_npz_round_trip(arrays))
    assert {k: v.tolist() for k, v in back.items()} == {k: np.asarray(v).tolist() for k, v in arrays.items()}
