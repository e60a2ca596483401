"""The shared numeric kernels against plain numpy: fixed point on host and device, weighted bincounts into a
state (both the masked-sum and the scatter path), division with a zero-denominator value."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evaluators.kernels import (
    SMALL_BINCOUNT,
    add_at,
    fixed_bincount,
    fixed_sum,
    from_fixed,
    safe_divide,
    scatter_add,
    to_fixed,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):  # as inside the compiled updates
        yield


def test_fixed_point_on_host_equals_the_device_form_and_round_trips():
    values = np.random.default_rng(3).normal(scale=3.0, size=(257, 3))
    device = np.asarray(to_fixed(jnp.asarray(values)))
    np.testing.assert_array_equal(to_fixed(values), device)  # NumPy in, NumPy out
    np.testing.assert_allclose(from_fixed(device), values, rtol=0, atol=2.0**-50)
    np.testing.assert_array_equal(np.asarray(fixed_sum(jnp.asarray(values[:, 0]))), device[:, 0].sum(axis=0))


@pytest.mark.parametrize("cells", [SMALL_BINCOUNT, SMALL_BINCOUNT + 1])
def test_add_at_equals_numpy_add_at(cells):
    rng = np.random.default_rng(cells)
    index = rng.integers(0, cells, 500)
    weights = rng.integers(0, 5, 500).astype(np.float64)
    start = rng.integers(0, 3, cells).astype(np.float64)
    expected = start.copy()
    np.add.at(expected, index, weights)
    np.testing.assert_array_equal(
        np.asarray(add_at(jnp.asarray(start), jnp.asarray(index), jnp.asarray(weights))), expected
    )
    np.testing.assert_array_equal(
        np.asarray(scatter_add(cells, jnp.asarray(index), jnp.asarray(weights))), np.bincount(index, weights, cells)
    )


@pytest.mark.parametrize("scale", [1.0, 1e6], ids=["bincount", "add-at"])
def test_fixed_bincount_is_the_integer_sum_of_each_index_fixed_points(scale):
    # scale 1e6: 2,000 values sum beyond 2**52 fixed-point units, so the float64 bincount would not be exact
    rng = np.random.default_rng(5)
    values = rng.normal(scale=scale, size=2_000)
    index = rng.integers(0, 16, 2_000)
    expected = np.zeros((16, 2), np.int64)
    np.add.at(expected, index, to_fixed(values))
    np.testing.assert_array_equal(fixed_bincount(index, values, 16), expected)


def test_safe_divide_takes_the_zero_division_value_where_the_denominator_is_zero():
    out = safe_divide(np.array([1.0, 2.0, 0.0]), np.array([4.0, 0.0, 0.0]), float("nan"))
    assert out[0] == 0.25 and np.isnan(out[1:]).all()
