"""Property tests of boxes and block grids: tiling, halos, ragged edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from volumetric.geometry import BlockGrid, Box, block_shape_for

dims = st.integers(min_value=1, max_value=3)


@st.composite
def grids(draw):
    ndim = draw(dims)
    shape = tuple(draw(st.integers(1, 40)) for _ in range(ndim))
    block = tuple(draw(st.integers(1, 16)) for _ in range(ndim))
    return BlockGrid(shape, block)


@given(grids())
def test_write_boxes_tile_the_volume_exactly(grid):
    count = np.zeros(grid.shape, dtype=int)
    for box in grid.boxes():
        assert not box.empty
        count[box.slices] += 1
    assert (count == 1).all()
    assert sum(1 for _ in grid.boxes()) == grid.num_blocks


@given(grids(), st.integers(0, 7))
def test_read_boxes_are_halo_grown_and_clipped(grid, halo):
    for index in grid.indices():
        write, read = grid.box(index), grid.read_box(index, halo)
        assert read.contains(write)
        assert Box.from_shape(grid.shape).contains(read)
        for a, r, w, n in zip(range(grid.ndim), zip(read.start, read.stop), zip(write.start, write.stop), grid.shape):
            assert r[0] == max(0, w[0] - halo)
            assert r[1] == min(n, w[1] + halo)
        inner = write.relative_to(read)
        assert tuple(s.stop - s.start for s in inner) == write.shape


@given(grids())
def test_ragged_last_blocks(grid):
    last = grid.box(tuple(g - 1 for g in grid.grid_shape))
    assert last.stop == grid.shape
    for n, b, s in zip(grid.shape, grid.block, last.shape):
        assert s == (n % b or b)


@given(grids(), st.data())
def test_keys_of_two_grids_match_only_for_identical_boxes(grid, data):
    other = BlockGrid(grid.shape, tuple(data.draw(st.integers(1, 16)) for _ in grid.shape))
    keys = {box.key(): box for box in grid.boxes()}
    for box in other.boxes():
        assert keys.get(box.key(), box) == box  # a done marker never stands for another box


@given(grids(), st.data())
def test_index_of_and_touching(grid, data):
    point = tuple(data.draw(st.integers(0, n - 1)) for n in grid.shape)
    idx = grid.index_of(point)
    box = grid.box(idx)
    assert all(a <= p < b for a, p, b in zip(box.start, point, box.stop))
    probe = Box.from_shape((1,) * grid.ndim, point).grow(2)
    touching = set(grid.indices_touching(probe))
    expected = {i for i in grid.indices() if not grid.box(i).intersect(probe).empty}
    assert touching == expected


def test_neighbour_counts_follow_connectivity():
    grid = BlockGrid((30, 30, 30), (10, 10, 10))
    centre = (1, 1, 1)
    assert len(list(grid.neighbours(centre, 1))) == 6
    assert len(list(grid.neighbours(centre, 2))) == 18
    assert len(list(grid.neighbours(centre, 3))) == 26
    assert len(list(grid.neighbours((0, 0, 0), 3))) == 7


@given(
    st.lists(st.integers(1, 300), min_size=1, max_size=4),
    st.data(),
)
def test_block_shape_is_whole_chunks_within_volume(shape, data):
    chunks = [data.draw(st.integers(1, n)) for n in shape]
    block = block_shape_for(shape, chunks, 2, target_bytes=2**16)
    assert 2 * math.prod(block) <= max(2**16, 2 * math.prod(chunks))
    for b, c, n in zip(block, chunks, shape):
        assert b % c == 0
        assert b < n + c


def test_block_shape_splits_an_axis_evenly():
    assert block_shape_for((384, 384, 384), (64, 64, 64), 4, 64 * 2**20, cubic=True) == (192,) * 3
    # 320 voxels in chunks of 64, 256 at most: blocks of 192 and 128 rather than 256 and 64
    assert block_shape_for((320,), (64,), 1, 256) == (192,)


def test_box_rejects_mismatched_corners():
    with pytest.raises(ValueError):
        Box((0, 0), (1,))
    with pytest.raises(IndexError):
        BlockGrid((4, 4), (2, 2)).box((2, 0))
