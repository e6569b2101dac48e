"""Sampling along t and stacked planes, singleton axes, validation by planes, t or volumes."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from ome_images import write_image

from volumetric.errors import InputError
from volumetric.train.dataset import PatchDataset, VolumePair
from volumetric.train.splits import parse_time_points
from volumetric_cli.main import vol as vol_command

TINY = ("--depth", "1", "--features", "4", "--batch", "2", "--steps-per-epoch", "2",
        "--val-patches", "2", "--steps", "2", "--no-augment")


def _vol(*args):
    return CliRunner().invoke(vol_command, [str(a) for a in args], catch_exceptions=False)


def _error(result):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vol: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 200, (6, 32, 32)).astype(np.uint16)
    plane = stack[0]
    return {
        "tyx": write_image(root / "tyx.zarr", stack, axes="tyx", chunks=(1, 32, 32)),
        "tmask": write_image(root / "tmask.zarr", (stack > 100).astype(np.uint8), axes="tyx"),
        "zyx": write_image(root / "zyx.zarr", stack, chunks=(1, 32, 32)),
        "zmask": write_image(root / "zmask.zarr", (stack > 100).astype(np.uint8)),
        "projection": write_image(root / "proj.zarr", plane[None]),
        "plane": write_image(root / "plane.zarr", (plane > 100).astype(np.uint8)),
        "czyx": write_image(root / "czyx.zarr", np.stack([stack, stack]), axes="czyx"),
    }


def test_two_dimensional_patches_of_a_time_series_cover_every_time_point(images):
    ds = PatchDataset([VolumePair(images["tyx"], images["tmask"])], (1, 16, 16),
                      sampler="grid", normalize="none")
    assert len(ds) == 6 * 4
    seen = {int(ds[i]["t"]) for i in range(len(ds))}
    assert seen == set(range(6))
    item = ds[0]
    t, (_, _, y, x) = int(item["t"]), item["location"].tolist()
    stack = np.asarray(zarr.open_group(images["tyx"], mode="r")["0"])
    np.testing.assert_array_equal(item["image"][0].numpy(), stack[t, y:y + 16, x:x + 16])
    chosen = PatchDataset([VolumePair(images["tyx"], images["tmask"], t=(1, 4))], (1, 16, 16),
                          samples_per_epoch=30)
    assert {int(chosen[i]["t"]) for i in range(30)} == {1, 4}


def test_default_split_of_2d_patches_keeps_whole_planes_or_time_points(images):
    for raw, target, axis in (("zyx", "zmask", 1), ("tyx", "tmask", 0)):
        found = {}
        for split in ("train", "val"):
            ds = PatchDataset([VolumePair(images[raw], images[target])], (1, 32, 32),
                              split=split, sampler="grid", samples_per_epoch=20)
            assert ds.val_split == ("planes" if axis else "t")
            found[split] = {int(ds[i]["location"][1]) if axis else int(ds[i]["t"])
                            for i in range(20)}
        assert found["train"] == set(range(5)) and found["val"] == {5}


def test_time_points_parse_and_bad_ones_are_refused(images):
    assert parse_time_points("0:3,5") == (0, 1, 2, 5) and parse_time_points(None) is None
    for bad in ("a", "3:1", "1:2:3"):
        with pytest.raises(InputError, match="--t"):
            parse_time_points(bad)
    with pytest.raises(InputError, match=r"--t 6 is outside raw .* \(time points 0..5\)"):
        PatchDataset([VolumePair(images["tyx"], images["tmask"], t=(0, 6))], (1, 16, 16))


def test_cli_time_points_and_validation_pairs(images, tmp_path):
    ok = _vol("train", images["tyx"], images["tmask"], "--out", tmp_path / "t", "--patch",
              "1,32,32", "--t", "0:4", *TINY)
    assert ok.exit_code == 0, ok.output
    line = _error(_vol("train", images["tyx"], images["tmask"], "--out", tmp_path / "b",
                       "--patch", "1,32,32", "--t", "2,9", *TINY))
    assert "--t 9 is outside raw" in line
    val = _vol("train", images["zyx"], images["zmask"], "--out", tmp_path / "v", "--patch",
               "1,32,32", "--val", f"{images['tyx']},{images['tmask']}", *TINY)
    assert val.exit_code == 0, val.output
    line = _error(_vol("train", images["zyx"], images["zmask"], "--out", tmp_path / "c",
                       "--patch", "1,32,32", "--val", f"{images['czyx']},{images['zmask']}",
                       *TINY))
    assert "raw" in line and "has 2 channels" in line
    line = _error(_vol("train", images["zyx"], images["zmask"], "--out", tmp_path / "d",
                       "--patch", "2,16,16", "--val", f"{images['projection']},{images['plane']}",
                       *TINY))
    assert "is 3D but raw" in line and "is a 2D image" in line
    volume = _vol("train", images["zyx"], images["zmask"], "--out", tmp_path / "p", "--pair",
                  f"{images['tyx']},{images['tmask']}", "--patch", "1,32,32",
                  "--val-split", "volume", *TINY)
    assert volume.exit_code == 0, volume.output


def test_a_stack_of_planes_trains_with_the_default_split(images, tmp_path):
    result = _vol("train", images["zyx"], images["zmask"], "--out", tmp_path / "run",
                  "--patch", "1,32,32", *TINY)
    assert result.exit_code == 0, result.output


def test_a_projection_against_a_2d_target_trains(images, tmp_path):
    result = _vol("train", images["projection"], images["plane"], "--out", tmp_path / "run",
                  "--patch", "1,16,16", "--val-fraction", "0.5", *TINY)
    assert result.exit_code == 0, result.output


def test_a_split_that_cannot_hold_the_patch_names_the_one_that_would(images, tmp_path):
    line = _error(_vol("train", images["zyx"], images["zmask"], "--out", tmp_path / "run",
                       "--patch", "1,32,32", "--val-split", "fraction", *TINY))
    assert "the train region (fraction) is 26 voxels along y" in line
    assert line.endswith("; --val-split planes would hold it")
    line = _error(_vol("train", images["projection"], images["plane"], "--out", tmp_path / "r",
                       "--val-split", "planes", *TINY))
    assert "needs a stack of planes" in line and "--val-fraction" in line


def test_pair_volumes_take_their_own_cube_lists(tmp_path):
    from volumetric.io.cubes import CubeList, write_cubes
    from volumetric.ops.train import DataSettings
    from volumetric.ops.train_data import patch_datasets, volume_pairs

    image = np.arange(16 * 32 * 32, dtype=np.float32).reshape(16, 32, 32)
    paths = [write_image(tmp_path / f"{n}.zarr", image) for n in ("a", "b")]
    listed = CubeList((16, 32, 32), (8, 16, 16), ((1, 1, 1),))
    write_cubes(tmp_path / "b.json", listed)
    data = DataSettings(paths[0], paths[0], pairs=((paths[1], paths[1], None),),
                        pair_cubes=(str(tmp_path / "b.json"),), patch=(4, 8, 8),
                        val_fraction=0, steps_per_epoch=50)
    train, _ = patch_datasets(data, volume_pairs(data), (4, 8, 8), seed=0, batch=2,
                              augment=None)
    starts = {p: [] for p in (0, 1)}
    for i in range(len(train)):
        plan = train.plan(i)
        starts[plan.pair].append(plan.start)
    cube = listed.boxes()[0]
    def inside(start) -> bool:  # the patch centre lies in the listed cube
        return all(lo <= s + h < hi for s, h, lo, hi in zip(start, (2, 4, 4), cube.start,
                                                             cube.stop))

    assert starts[1] and all(inside(start) for start in starts[1])
    assert not all(inside(start) for start in starts[0])  # the first volume: everywhere
    with pytest.raises(InputError, match="--pair-cubes"):
        patch_datasets(DataSettings(paths[0], paths[0], pair_cubes=(str(tmp_path / "b.json"),),
                                    patch=(4, 8, 8)), volume_pairs(data), (4, 8, 8), seed=0,
                       batch=2, augment=None)
