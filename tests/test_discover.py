"""vol discover: BFS over occupied cubes against a brute-force numpy/scipy reference."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import product

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from image_files import write_image
from volumetric.engine import RunOptions
from volumetric.io.cubes import read_cubes
from volumetric.io.swc import Skeleton, write_swc
from volumetric.ops.discover import discover

CUBE = (8, 8, 8)
RANK = {6: 1, 18: 2, 26: 3}


def _volume() -> np.ndarray:
    """Occupied cubes joined through faces, an edge, a corner; weak and isolated cubes too."""
    v = np.zeros((40, 48, 56), dtype=np.uint16)
    v[2:6, 0:32, 0:8] = 500  # a rod along y: cubes (0, 0..3, 0), 256 voxels each
    v[10:14, 26:30, 8:16] = 500  # cube (1, 3, 1), 128 voxels: an edge neighbour of the rod's end
    v[18:20, 34:36, 18:20] = 500  # cube (2, 4, 2), 8 voxels: a corner neighbour of (1, 3, 1)
    v[20:23, 40:43, 24:27] = 500  # cube (2, 5, 3), 27 voxels: an edge neighbour of (2, 4, 2)
    v[33:39, 2:8, 48:54] = 500  # cube (4, 0, 6), isolated
    v[v == 0] = 20  # background noise below the threshold
    return v


def _counts(v: np.ndarray, threshold: float) -> np.ndarray:
    fg = np.pad(v > threshold, [(0, -s % c) for s, c in zip(v.shape, CUBE)])
    g = [s // c for s, c in zip(fg.shape, CUBE)]
    return fg.reshape(g[0], CUBE[0], g[1], CUBE[1], g[2], CUBE[2]).sum(axis=(1, 3, 5))


def _brute_force(v, seeds, connectivity, min_voxels, threshold=100):
    occupied = _counts(v, threshold) >= min_voxels
    labels, _ = ndi.label(occupied, ndi.generate_binary_structure(3, RANK[connectivity]))
    seed_labels = {labels[tuple(s // c for s, c in zip(p, CUBE))] for p in seeds} - {0}
    kept = np.isin(labels, list(seed_labels)) & occupied
    return sorted(tuple(int(i) for i in c) for c in np.argwhere(kept))


def _neighbourhood(cubes, grid_shape, connectivity):
    out = set()
    for c in cubes:
        for step in product((-1, 0, 1), repeat=3):
            if sum(s != 0 for s in step) > RANK[connectivity]:
                continue
            n = tuple(a + s for a, s in zip(c, step))
            if all(0 <= a < g for a, g in zip(n, grid_shape)):
                out.add(n)
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    v = _volume()
    return v, write_image(tmp_path_factory.mktemp("discover") / "raw.zarr", v, chunks=CUBE)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("min_voxels", [8, 100])
def test_search_equals_brute_force(client, tmp_path, raw, connectivity, min_voxels):
    v, path = raw
    seeds = [(3, 5, 4)]
    result = discover(path, str(tmp_path / "c.json"), seeds=seeds, threshold=100,
                      min_voxels=min_voxels, connectivity=connectivity,
run=RunOptions(client=client, progress=False))
    expected = _brute_force(v, seeds, connectivity, min_voxels)
    assert [list(c) for c in result.cubes] == [list(c) for c in expected]
    grid_shape = result.grid.grid_shape
    seed_cubes = {(0, 0, 0)}
    read_bound = _neighbourhood(expected, grid_shape, connectivity) | seed_cubes
    assert result.info["cubes_read"] == len(read_bound) < result.grid.num_blocks


def test_connectivity_changes_result(client, tmp_path, raw):
    v, path = raw
    found = {
        k: discover(path, str(tmp_path / f"{k}.json"), seeds=[(3, 5, 4)], threshold=100,
                    min_voxels=8, connectivity=k,
run=RunOptions(client=client, progress=False)).cubes
        for k in (6, 18, 26)
    }
    assert len(found[6]) < len(found[18]) < len(found[26])


def test_regions_grouping_and_all_give_the_same_cubes(client, tmp_path, raw):
    v, path = raw
    run = RunOptions(client=client, progress=False)
    kw = dict(seeds=[(3, 5, 4), (35, 4, 50)], threshold=100, min_voxels=8)
    one = discover(path, str(tmp_path / "a.json"), region=1, run=run, **kw)
    odd = discover(path, str(tmp_path / "b.json"), region=(2, 1, 3), run=run, **kw)
    whole = discover(path, str(tmp_path / "c.json"), region=64, run=run, **kw)
    default = discover(path, str(tmp_path / "g.json"), run=run, **kw)  # regions of 3x3x4 cubes
    full = discover(path, str(tmp_path / "d.json"), scan_all=True,
                    run=replace(run, block_bytes=1), **kw)
    big = discover(path, str(tmp_path / "e.json"), scan_all=True,
                   run=replace(run, block_bytes=2**30), **kw)
    assert one.cubes == odd.cubes == whole.cubes == default.cubes == full.cubes == big.cubes
    assert (one.info["cubes_read"] == odd.info["cubes_read"] == whole.info["cubes_read"]
            == default.info["cubes_read"])
    assert full.info["cubes_read"] == full.grid.num_blocks > one.info["cubes_read"]
    assert one.info["levels"] == whole.info["levels"] == 7
    assert one.info["tasks"] > odd.info["tasks"] > whole.info["tasks"] == 1
    assert default.info["tasks"] > 1
    every = discover(path, str(tmp_path / "f.json"), scan_all=True, threshold=100, min_voxels=8,
                     run=RunOptions(client=client, progress=False))
    expected = np.argwhere(_counts(v, 100) >= 8)
    assert [list(c) for c in every.cubes] == expected.tolist()


def test_json_contract_and_reader(client, tmp_path, raw):
    v, path = raw
    out = tmp_path / "c.json"
    discover(path, str(out), seeds=[(3, 5, 4)], threshold=100,
             run=RunOptions(client=client, progress=False))
    data = json.loads(out.read_text())
    assert data["cube_shape"] == list(CUBE) and data["shape"] == list(v.shape)
    assert data["cubes"] == [[0, 0, 0], [0, 1, 0], [0, 2, 0], [0, 3, 0], [1, 3, 1]]
    assert data["seeds"] == [[3, 5, 4]] and data["cubes_read"] > len(data["cubes"])
    assert data["counts"] == [256, 256, 256, 256, 128]
    cubes = read_cubes(out, shape=v.shape)
    assert cubes.boxes()[3].start == (0, 24, 0)
    assert cubes.touches(cubes.boxes()[0]) and not cubes.touches(cubes.grid.box((4, 5, 6)))
    assert not (tmp_path / "c.json.partial").exists()


def test_store_in_zarr_attributes(client, tmp_path):
    v = _volume()
    path = write_image(tmp_path / "raw.zarr", v, chunks=CUBE)
    discover(path, str(tmp_path / "c.json"), seeds=[(3, 5, 4)], threshold=100, store_in=path,
             run=RunOptions(client=client, progress=False))
    assert read_cubes(path).cubes == read_cubes(tmp_path / "c.json").cubes
    assert np.array_equal(zarr.open_array(f"{path}/0")[...], v)


def test_channel_and_time_selection(client, tmp_path):
    v = np.zeros((2, 3, 16, 16, 16), dtype=np.uint8)
    v[1, 2, 0:8, 0:8, 0:8] = 1
    v[1, 2, 8:16, 8:16, 8:16] = 1
    v[0, 0, 0:8, 8:16, 0:8] = 1
    path = write_image(tmp_path / "raw.zarr", v, chunks=(1, 1, 8, 8, 8))
    kw = dict(seeds=[(0, 0, 0), (0, 8, 0)], min_voxels=1,
              run=RunOptions(client=client, progress=False))
    chosen = discover(path, str(tmp_path / "a.json"), t=1, channel=2, **kw)
    assert chosen.cubes == ((0, 0, 0), (1, 1, 1))
    first = discover(path, str(tmp_path / "b.json"), **kw)
    assert first.cubes == ((0, 1, 0),)


def test_seeds_from_swc_use_voxel_size(client, tmp_path):
    v = _volume()
    path = write_image(tmp_path / "raw.zarr", v, voxel_size=(2.0, 0.5, 0.5), chunks=CUBE)
    swc = tmp_path / "n.swc"
    # x=2 um, y=2.5 um, z=6 um -> voxel (3, 5, 4), inside the rod
    write_swc(swc, Skeleton(np.array([1]), np.array([3]), np.array([[2.0, 2.5, 6.0]]),
                            np.array([1.0]), np.array([-1])))
    result = discover(path, str(tmp_path / "c.json"), seeds_swc=str(swc), threshold=100,
                      run=RunOptions(client=client, progress=False))
    assert result.info["seeds"] == [[3, 5, 4]]
    assert result.cubes == ((0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 0), (1, 3, 1))


def test_cli_discover(vol, tmp_path, raw):
    v, path = raw
    result = vol("discover", path, tmp_path / "c.json", "--seed", "3,5,4", "--seed", "35,4,50",
                 "--threshold", "100", "--min-voxels", "8", "--connectivity", "6")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["cubes"] == [list(c) for c in _brute_force(v, [(3, 5, 4), (35, 4, 50)], 6, 8)]


@pytest.mark.parametrize("args, message", [
    (["--seed", "3,5,400"], "seed 3,5,400 lies outside"),
    (["--seed", "1,1"], "seed 1,1 has 2 coordinates; RAW's volume (40, 48, 56) needs 3 (z,y,x)"),
    (["--seed", "3,5,4", "--cube", "12,8,8"], "not a multiple of RAW's chunk shape 8,8,8; "
     "choose a multiple (e.g. --cube 16,8,8) or convert RAW with --chunks 12,8,8"),
    ([], "no seeds"),
    (["--seed", "3,5,4", "--channel", "1"], "has no c axis"),
    (["--seed", "3,5,4", "--seeds-swc", "missing.swc"], "missing.swc: no such file"),
])
def test_cli_bad_input(vol, tmp_path, raw, args, message):
    result = vol("discover", raw[1], tmp_path / "c.json", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.json").exists()


def test_cli_bad_swc_line(vol, tmp_path, raw):
    swc = tmp_path / "bad.swc"
    swc.write_text("# header\n1 1 0 0 0 1 -1\n2 3 1 1 oops 1 1\n")
    result = vol("discover", raw[1], tmp_path / "c.json", "--seeds-swc", swc)
    assert result.exit_code == 2 and "bad.swc:3" in result.stderr


def test_resume_reuses_saved_counts_without_reading(client, tmp_path, raw):
    from volumetric.io.sources import open_source
    from volumetric.ops.discover import CountStore

    v, path = raw
    out = tmp_path / "c.json"
    # An interrupted run had counted the rod's first cube and found the second one empty.
    store = CountStore(out, open_source(path), (None, None, None), CUBE, 100.0)
    store.counts = {(0, 0, 0): 256, (0, 1, 0): 0}
    store.save()
    result = discover(path, str(out), seeds=[(3, 5, 4)], threshold=100,
                      run=RunOptions(client=client, progress=False))
    assert (0, 1, 0) not in result.cubes and result.cubes == ((0, 0, 0),)
    assert not (tmp_path / "c.json.partial").exists()
    other = CountStore(out, open_source(path), (None, None, None), CUBE, 50.0)
    assert other.counts == {}  # another threshold never reuses them


def test_cli_warns_when_raw_intensities_fill_every_cube(vol, tmp_path, raw):
    args = ("--all", "--min-voxels", "8")
    noisy = vol("discover", raw[1], tmp_path / "c.json", *args)
    assert noisy.exit_code == 0, noisy.output
    assert "every cube read (210) holds at least --min-voxels 8 voxels above 0: is RAW a " \
           "mask? For raw intensities pass --threshold" in noisy.stderr
    quiet = vol("discover", raw[1], tmp_path / "d.json", *args, "--threshold", "100")
    assert quiet.exit_code == 0 and "is RAW a mask" not in quiet.stderr
