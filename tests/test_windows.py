"""The window grid against MONAI's placement, and the ownership of windows by blocks."""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volumetric.geometry import BlockGrid, Box
from volumetric.windows import WindowGrid, WindowPlan, axis_starts, scan_interval


@st.composite
def window_grids(draw, max_size: int = 40):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, max_size)) for _ in range(ndim))
    window = tuple(draw(st.integers(1, 20)) for _ in range(ndim))
    overlap = tuple(draw(st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.75, 0.9])) for _ in range(ndim))
    return WindowGrid(shape, window, overlap)


def monai_starts(grid: WindowGrid) -> set[tuple[int, ...]]:
    """Window starts as MONAI's sliding_window_inference computes them, shifted by its padding."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    size = tuple(max(s, w) for s, w in zip(grid.shape, grid.window))
    interval = _get_scan_interval(size, grid.window, grid.ndim, grid.overlap)
    slices = dense_patch_slices(size, grid.window, interval)
    return {tuple(s.start - p for s, p in zip(sl, grid.pad_before)) for sl in slices}


@settings(max_examples=150, deadline=None)
@given(window_grids())
def test_window_starts_are_monais(grid):
    starts = set(product(*grid.starts))
    assert starts == monai_starts(grid)
    assert grid.count == len(starts)


@settings(max_examples=150, deadline=None)
@given(window_grids(), st.data())
def test_owned_and_touching_windows_are_found_by_their_definition(grid, data):
    """Bisection finds exactly the windows the definitions name, padded axes included."""
    lo = tuple(data.draw(st.integers(-5, n + 2)) for n in grid.shape)
    box = Box(lo, tuple(a + data.draw(st.integers(1, 25)) for a in lo))
    every = list(product(*grid.starts))
    assert list(grid.owned_by(box)) == [
        s for s in every if all(a <= max(v, 0) < b for v, a, b in zip(s, box.start, box.stop))]
    assert list(grid.touching(box)) == [
        s for s in every
        if all(v < b and v + w > a for v, w, a, b in zip(s, grid.window, box.start, box.stop))]


def test_stride_rounding_and_window_equal_to_size():
    assert scan_interval(100, 10, 0.7) == 3  # int(10 * 0.3) with float rounding, as MONAI
    assert scan_interval(16, 16, 0.5) == 16
    assert axis_starts(16, 16, 0.5) == (0,)
    assert scan_interval(40, 1, 0.5) == 1
    assert axis_starts(40, 16, 0.0) == (0, 16, 24)


def test_padding_is_centred_as_in_monai():
    grid = WindowGrid((5, 40), (16, 16), (0.5,))
    assert grid.pad_before == (5, 0)
    assert grid.padded_axes == (0,)
    assert grid.starts[0] == (-5,)


def test_bad_overlap_is_refused():
    with pytest.raises(ValueError):
        WindowGrid((10,), (4,), (1.0,))


@st.composite
def plans(draw, sparse: bool = False):
    grid = draw(window_grids(max_size=24))
    block = tuple(draw(st.integers(3, 16)) for _ in range(grid.ndim))
    blocks = BlockGrid(grid.shape, block)
    if not sparse:
        return WindowPlan(grid, blocks)
    cube_shape = tuple(draw(st.integers(1, 12)) for _ in range(grid.ndim))
    cube_grid = BlockGrid(grid.shape, cube_shape)
    indices = list(cube_grid.indices())
    cubes = draw(st.sets(st.sampled_from(indices), max_size=6))
    return WindowPlan(grid, blocks, cube_shape, frozenset(cubes))


@settings(max_examples=150, deadline=None)
@given(plans())
def test_every_window_is_owned_by_exactly_one_block(plan):
    owned = [s for i in plan.blocks.indices() for s in plan.windows_of(i)]
    assert len(owned) == len(set(owned)) == plan.windows.count
    assert sum(len(plan.windows_of(i)) for i in plan.evaluation_blocks()) == plan.windows.count


@settings(max_examples=100, deadline=None)
@given(plans(sparse=True))
def test_sparse_plan_runs_exactly_the_windows_touching_cubes(plan):
    def touches(start):
        box = plan.windows.box(start).clip(plan.windows.shape)
        return any(
            not box.intersect(Box.from_shape(plan.cube_shape, [i * c for i, c in zip(cube, plan.cube_shape)])).empty
            for cube in plan.cubes
        )

    expected = {s for s in product(*plan.windows.starts) if touches(s)}
    run = [s for i in plan.evaluation_blocks() for s in plan.windows_of(i)]
    assert len(run) == len(set(run)) == plan.selected_count()
    assert set(run) == expected


@settings(max_examples=100, deadline=None)
@given(plans(sparse=True))
def test_output_blocks_read_every_region_that_overlaps_them(plan):
    evaluated = plan.evaluation_blocks()
    written = set(plan.output_blocks(evaluated))
    for i in plan.blocks.indices():
        box = plan.blocks.box(i)
        expected = [j for j in evaluated if not plan.region_of(j).intersect(box).empty]
        assert [j for j, _ in plan.sources_of(i)] == expected
        assert all(region == plan.region_of(j) for j, region in plan.sources_of(i))
        in_a_cube = any(
            not box.intersect(Box.from_shape(plan.cube_shape, [k * c for k, c in zip(cube, plan.cube_shape)])).empty
            for cube in plan.cubes
        )
        # a sparse run writes only blocks holding part of a listed cube, and each of those
        # is covered by a window that ran
        assert (i in written) == (bool(expected) and in_a_cube)
        assert not in_a_cube or expected
