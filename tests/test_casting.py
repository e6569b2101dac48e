"""to_dtype: the one cast of computed values back to an image's data type."""

import numpy as np
import pytest

from volumetric.kernels.casting import to_dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int8, np.int16, np.int32])
def test_integers_are_rounded_half_to_even_and_clipped(dtype):
    info = np.iinfo(dtype)
    values = np.array([info.min - 10.7, -0.5, 0.5, 1.5, 2.49, info.max + 0.4, info.max + 3.0])
    expected = np.array([info.min, 0, 0, 2, 2, info.max, info.max])
    out = to_dtype(values, dtype)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected.astype(dtype))


def test_floats_are_a_plain_cast_and_the_input_is_left_alone():
    values = np.array([0.123456789, -1e6, 2.5])
    kept = values.copy()
    out = to_dtype(values, np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.astype(np.float32))
    np.testing.assert_array_equal(values, kept)
