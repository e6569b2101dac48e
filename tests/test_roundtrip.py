"""Property tests: any array converted with any chunking reads back identically."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.transform import downscale_local_mean

from volumetric.engine import RunOptions
from volumetric.kernels.downsample import downsample
from volumetric.ops.convert import convert
from volumetric.ops.info import image_info


@st.composite
def arrays(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 2 if i == 0 and ndim == 4 else 24)) for i in range(ndim))
    dtype = draw(st.sampled_from(["uint8", "uint16", "int32", "float32"]))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).integers(0, 200, size=shape).astype(dtype)
    spatial = shape[-3:] if ndim >= 3 else shape
    chunks = tuple(draw(st.integers(max(1, s // 4), s)) for s in spatial)
    return data, chunks, draw(st.sampled_from(["0.5", "0.4"])), draw(st.integers(1, 2))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays())
def test_convert_round_trip(client, case):
    data, chunks, ngff, levels = case
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "a.npy", Path(tmp) / "a.zarr"
        np.save(src, data)
        convert(str(src), str(dst), chunks=chunks, ngff=ngff, levels=levels,
                run=RunOptions(block_bytes=1, client=client, progress=False))
        np.testing.assert_array_equal(zarr.open_array(dst / "0")[:], data)
        info = image_info(str(dst))
        assert info["shape"] == list(data.shape) and info["dtype"] == str(data.dtype)
        assert info["complete"] and info["ngff"] == ngff
        spatial = data.shape[-3:] if data.ndim >= 3 else data.shape
        if levels == 2 and max(spatial) == 1:  # nothing can shrink: no second level
            assert len(info["levels"]) == 1
        elif levels == 2:
            factors = info["levels"][1]["factors"]
            np.testing.assert_array_equal(zarr.open_array(dst / "1")[:], downsample(data, factors))


def test_downsample_mean_matches_skimage_and_averages_ragged_edges():
    data = np.random.default_rng(0).random((8, 12, 10))
    np.testing.assert_allclose(downsample(data, (2, 2, 2)), downscale_local_mean(data, (2, 2, 2)))
    ragged = np.arange(7.0)
    np.testing.assert_allclose(downsample(ragged, (3,)), [1.0, 4.0, 6.0])
    labels = np.arange(16, dtype=np.uint16).reshape(4, 4)
    np.testing.assert_array_equal(downsample(labels, (2, 2), method="nearest"), [[0, 2], [8, 10]])


def test_downsample_rounds_halves_to_even_and_needs_no_float_copy_of_the_block():
    np.testing.assert_array_equal(downsample(np.array([1, 2, 2, 3], np.uint16), (2,)), [2, 2])
    np.testing.assert_array_equal(downsample(np.array([-3, -2, -1, 0], np.int8), (2,)), [-2, 0])
    sixes = np.array([[0, 0, 1, 1, 1, 1], [0, 0, 2, 2, 2, 2]], np.uint8)  # cells of 6: 0.5, 1.5
    np.testing.assert_array_equal(downsample(sixes, (2, 3)), [[0, 2]])
    block = np.random.default_rng(1).integers(0, 65536, (47, 64, 63), dtype=np.uint16)
    tracemalloc.start()
    try:
        result = downsample(block, (2, 2, 2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * block.nbytes  # a float64 copy alone would be 4x
    cells = block[:46, :, :62].reshape(23, 2, 32, 2, 31, 2).astype(np.int64).sum(axis=(1, 3, 5))
    np.testing.assert_array_equal(result[:23, :, :31], np.rint(cells / 8))
    np.testing.assert_array_equal(result[23, 0, 31], block[46, :2, 62].mean().round())
