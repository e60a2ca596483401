"""Mostly-zero arrays (bootstrap-bucket states) are stored as their non-zero positions and values, and come
back bit for bit, whatever their dtype, shape, signed zeros and NaNs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipelines.storage import _unpack, pack_mostly_zero

DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.int8, np.uint8, np.bool_])


@st.composite
def mostly_zero(draw) -> np.ndarray:
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40))
    if draw(st.booleans()):  # anything, dense or not
        return draw(hnp.arrays(dtype, shape))
    array = np.zeros(shape, dtype)
    count = draw(st.integers(0, min(array.size, 64)))
    at = draw(st.lists(st.integers(0, array.size - 1), min_size=count, max_size=count))
    array.reshape(-1)[at] = draw(hnp.arrays(dtype, count))  # any bit patterns: NaN, -0.0, extremes
    return array


@settings(max_examples=100, deadline=None)
@given(mostly_zero())
def test_packed_arrays_come_back_bit_for_bit(array: np.ndarray) -> None:
    packed = pack_mostly_zero("b0/t0/counts", array)
    back = _unpack(dict(packed))["b0/t0/counts"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()
    nonzero = np.count_nonzero(array.reshape(-1).view(f"u{array.dtype.itemsize}"))
    assert (len(packed) == 3) == (array.size >= 4096 and 4 * nonzero <= array.size)


def test_a_sparse_histogram_is_stored_in_a_fraction_of_its_size() -> None:
    histogram = np.zeros((128, 2, 2498))
    histogram[:, :, ::97] = 3.0  # 26 occupied bins of 2,498 per bucket and label
    packed = pack_mostly_zero("h", histogram)
    assert sum(a.nbytes for a in packed.values()) < histogram.nbytes / 40
    assert _unpack(dict(packed))["h"].tobytes() == histogram.tobytes()
