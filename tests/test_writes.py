"""write_box stores what a plain zarr write stores, skipping zarr's empty-chunk check only
where every chunk of the box is shown to hold data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from volumetric.geometry import BlockGrid
from volumetric.io.writes import every_chunk_holds_data, write_box


def _stored(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _array(path: Path, shape, chunks, dtype="uint16", fill_value=0, zarr_format=3):
    return zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype,
                             fill_value=fill_value, zarr_format=zarr_format)


@st.composite
def aligned_writes(draw):
    """An array's shape and chunks, a chunk-aligned box, and data with some chunks all zero."""
    ndim = draw(st.integers(1, 3))
    chunks = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    shape = tuple(c * draw(st.integers(1, 3)) - draw(st.integers(0, c - 1)) for c in chunks)
    grid = BlockGrid(shape, chunks)
    first = tuple(draw(st.integers(0, g - 1)) for g in grid.grid_shape)
    last = tuple(draw(st.integers(f, g - 1)) for f, g in zip(first, grid.grid_shape))
    start, stop = grid.box(first).start, grid.box(last).stop
    index = tuple(slice(a, b) for a, b in zip(start, stop))
    seed = draw(st.integers(0, 2**16))
    sparsity = draw(st.sampled_from([0.0, 0.9, 0.999]))
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 9, tuple(b - a for a, b in zip(start, stop)), dtype=np.uint16)
    data[rng.random(data.shape) < sparsity] = 0
    return shape, chunks, index, data


@settings(max_examples=60, deadline=None)
@given(aligned_writes())
def test_holds_data_exactly_when_every_chunk_of_the_box_has_a_non_fill_value(case):
    shape, chunks, index, data = case
    array = zarr.create_array({}, shape=shape, chunks=chunks, dtype="uint16", fill_value=0)
    expected = all(data[box.slices].any() for box in BlockGrid(data.shape, chunks).boxes())
    assert every_chunk_holds_data(array, index, data) == expected


@settings(max_examples=25, deadline=None)
@given(aligned_writes())
def test_write_box_stores_the_same_keys_and_bytes_as_zarr(tmp_path_factory, case):
    shape, chunks, index, data = case
    root = tmp_path_factory.mktemp("w")
    ours, plain = _array(root / "ours", shape, chunks), _array(root / "plain", shape, chunks)
    write_box(str(root / "ours"), index, data)
    plain[index] = data
    assert _stored(root / "ours") == _stored(root / "plain")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_an_all_fill_chunk_is_still_left_unstored(tmp_path, zarr_format):
    data = np.ones((8, 8), dtype=np.uint16)
    data[4:, 4:] = 0  # one of the four chunks is all fill value
    _array(tmp_path / "a", (8, 8), (4, 4), zarr_format=zarr_format)
    write_box(str(tmp_path / "a"), (slice(0, 8), slice(0, 8)), data)
    chunk_files = [p for p in (tmp_path / "a").rglob("*") if p.is_file() and ".z" not in p.name
                   and p.name != "zarr.json"]
    assert len(chunk_files) == 3
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a"))[...], data)


@pytest.mark.parametrize("index, data, why", [
    ((slice(2, 6), slice(0, 8)), np.ones((4, 8), np.uint16), "off the chunk grid"),
    ((slice(0, 4), slice(0, 8)), np.ones((4, 8), np.int32), "another dtype"),
    ((slice(0, 4, 2), slice(0, 8)), np.ones((2, 8), np.uint16), "a strided selection"),
    ((0, slice(0, 8)), np.ones(8, np.uint16), "an integer index"),
    ((slice(0, 4),), np.ones((4, 8), np.uint16), "too few slices"),
])
def test_not_shown_for_selections_it_cannot_judge(index, data, why):
    array = zarr.create_array({}, shape=(8, 8), chunks=(4, 4), dtype="uint16", fill_value=0)
    assert not every_chunk_holds_data(array, index, data), why


def test_not_shown_for_nan_fill_or_negative_zero():
    nan_filled = zarr.create_array({}, shape=(4,), chunks=(2,), dtype="float32",
                                   fill_value=np.nan)
    assert not every_chunk_holds_data(nan_filled, (slice(0, 4),), np.ones(4, np.float32))
    zero_filled = zarr.create_array({}, shape=(4,), chunks=(2,), dtype="float32", fill_value=0)
    # -0.0 equals the fill value as a number; zarr compares bits, so it decides
    assert not every_chunk_holds_data(zero_filled, (slice(0, 4),),
                                      np.array([-0.0, -0.0, 1, 1], np.float32))
