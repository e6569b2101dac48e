"""Samplers: foreground probability, uniformity, cubes, grid tiling, train/val split by region."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from ome_images import write_image
from scipy import ndimage

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.kernels.augment import AugmentConfig
from volumetric.train.dataset import PatchDataset, VolumePair

SHAPE = (24, 40, 48)


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 500, SHAPE).astype(np.uint16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:14, 5:9, 20:40] = 1  # a thin rod: about 0.3 % foreground
    distance = np.minimum(ndimage.distance_transform_edt(labels == 0), 6).astype(np.float32)
    return (labels, distance, write_image(root / "raw.zarr", raw, chunks=(8, 16, 16)),
            write_image(root / "labels.zarr", labels, chunks=(8, 16, 16)),
            write_image(root / "distance.zarr", distance, chunks=(8, 16, 16)))


def _centres(ds, patch):
    return [tuple(s + p // 2 for s, p in zip(ds.plan(i).start, patch)) for i in range(len(ds))]


@pytest.mark.parametrize("probability,rule,target", [(0.3, ">0", 1), (0.75, "<2", 2)])
def test_foreground_probability_is_met(sparse, probability, rule, target):
    arrays = {1: sparse[0], 2: sparse[1]}
    ds = PatchDataset([VolumePair(sparse[2], sparse[target + 2])], (8, 16, 16),
                      sampler="foreground", foreground_probability=probability, foreground=rule,
                      samples_per_epoch=1000, seed=1)
    volume = arrays[target]
    test = (volume > 0) if rule == ">0" else (volume < 2)
    centres = _centres(ds, (8, 16, 16))
    hits = [bool(test[c]) for c in centres]
    assert abs(np.mean(hits) - probability) <= 0.02
    assert abs(np.mean(hits[:100]) - probability) <= 0.02  # already after a few batches
    background = {c for c, h in zip(centres, hits) if not h}
    assert len(background) > 100  # background centres are spread, not repeated


def test_foreground_centres_are_uniform_over_foreground_voxels(tmp_path):
    labels = np.zeros((16, 32, 32), np.uint8)
    points = [(4, 8, 8), (8, 20, 12), (11, 24, 20)]
    for p in points:
        labels[p] = 1
    raw = write_image(tmp_path / "r.zarr", labels * 10, chunks=(8, 8, 8))
    target = write_image(tmp_path / "t.zarr", labels, chunks=(8, 8, 8))
    ds = PatchDataset([VolumePair(raw, target)], (8, 16, 16), sampler="foreground",
                      foreground_probability=1.0, samples_per_epoch=1500)
    counts = Counter(_centres(ds, (8, 16, 16)))
    assert set(counts) == set(points)
    assert all(abs(n - 500) < 5 * np.sqrt(1500 / 3 * 2 / 3) for n in counts.values())


def test_no_valid_location_is_a_clear_error(sparse, tmp_path):
    empty = write_image(tmp_path / "e.zarr", np.zeros(SHAPE, np.uint8), chunks=(8, 16, 16))
    with pytest.raises(InputError, match="no foreground voxel"):
        PatchDataset([VolumePair(sparse[2], empty)], (8, 16, 16), sampler="foreground")
    ds = PatchDataset([VolumePair(sparse[2], empty)], (8, 16, 16), sampler="foreground",
                      foreground_probability=0.0, samples_per_epoch=3)
    assert ds[2]["target"].sum() == 0
    cubes = tmp_path / "corner.json"  # a cube where no patch can be centred inside the val slab
    cubes.write_text(json.dumps({"cube_shape": [8, 16, 16], "cubes": [[0, 0, 0]]}))
    with pytest.raises(InputError, match="no patch"):
        PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 8, 8), split="val",
                     cubes=str(cubes))


def test_cubes_restrict_sampling(sparse, tmp_path):
    listing = tmp_path / "cubes.json"
    listing.write_text(json.dumps({"cube_shape": [8, 16, 16], "cubes": [[1, 0, 1], [2, 1, 2]]}))
    boxes = [Box.from_shape((8, 16, 16), (8, 0, 16)), Box.from_shape((8, 16, 16), (16, 16, 32))]
    for sampler in ("random", "foreground"):
        ds = PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 16, 16), sampler=sampler,
                          cubes=str(listing), samples_per_epoch=300, foreground_probability=0.5)
        centres = _centres(ds, (8, 16, 16))
        inside = [[b.contains(Box.from_shape((1, 1, 1), c)) for b in boxes] for c in centres]
        assert all(any(x) for x in inside)
        assert all(sum(col) > 20 for col in zip(*inside))  # both cubes are used
    grid = PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 16, 16), sampler="grid",
                        cubes=str(listing))
    tiles = [Box.from_shape((8, 16, 16), grid.plan(i).start) for i in range(len(grid))]
    every = PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 16, 16), sampler="grid")
    all_tiles = [Box.from_shape((8, 16, 16), every.plan(i).start) for i in range(len(every))]
    assert len(set(tiles)) == len(tiles)
    assert set(tiles) == {t for t in all_tiles if any(not t.intersect(b).empty for b in boxes)}
    covered = np.zeros(SHAPE, bool)
    for t in tiles:
        covered[t.slices] = True
    assert all(covered[b.slices].all() for b in boxes) and covered.sum() < covered.size / 4


def test_grid_tiles_cover_the_image(tmp_path):
    image = np.arange(600 * 520, dtype=np.uint32).reshape(600, 520) % 251
    raw = write_image(tmp_path / "r.zarr", image.astype(np.uint8), chunks=(256, 256))
    ds = PatchDataset([VolumePair(raw, raw)], (1, 256, 256), sampler="grid", normalize="none")
    covered = np.zeros(image.shape, int)
    for i in range(len(ds)):
        item = ds[i]
        _, _, y, x = item["location"].tolist()
        covered[y:y + 256, x:x + 256] += 1
        np.testing.assert_array_equal(item["image"][0].numpy(), image[y:y + 256, x:x + 256])
    assert len(ds) == 9 and covered.min() >= 1


def test_grid_epochs_walk_through_all_tiles(sparse):
    # 3 x 3 x 3 = 27 tiles of 8x16x16, 6 per epoch: every tile within 5 epochs, no repeats.
    def grid(seed):
        return PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 16, 16), sampler="grid",
                            samples_per_epoch=6, seed=seed)

    ds = grid(seed=1)
    tiles = len(ds.sampler)
    starts = []
    for epoch in range(5):
        ds.set_epoch(epoch)
        starts += [ds.plan(i).start for i in range(len(ds))]
    assert tiles == 27 and len(set(starts[:tiles])) == tiles
    assert set(starts[tiles:]) <= set(starts[:tiles])
    again = grid(seed=1)
    again.set_epoch(3)
    assert [again.plan(i).start for i in reversed(range(6))][::-1] == starts[18:24]
    other = grid(seed=2)
    assert [other.plan(i).start for i in range(6)] != starts[:6]


@pytest.mark.parametrize("sampler", ["random", "grid", "foreground"])
def test_train_and_val_regions_never_share_a_voxel(sparse, sampler, monkeypatch):
    augment = AugmentConfig(spatial_probability=1.0, rotate_degrees=30, elastic_magnitude=4)
    reads: dict[str, list[Box]] = {"train": [], "val": []}
    patches: dict[str, list[Box]] = {"train": [], "val": []}
    for split in ("train", "val"):
        ds = PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 8, 8), sampler=sampler,
                          split=split, val_fraction=0.3, augment=augment, samples_per_epoch=40)
        real_read = ds._read

        def recording_read(pair, role, box, split=split, real_read=real_read):
            reads[split].append(box)
            return real_read(pair, role, box)

        monkeypatch.setattr(ds, "_read", recording_read)
        for i in range(len(ds)):
            ds[i]
            patches[split].append(Box.from_shape((1, 8, 8, 8), (0, *ds.plan(i).start)))
        region = ds.regions[0]  # (t, z, y, x)
        assert all(region.contains(b) for b in reads[split] + patches[split])
    # The longest axis (x, 48 voxels) is split at 48 - round(0.3 * 48) = 34.
    assert all(b.stop[3] <= 34 for b in reads["train"])
    assert all(b.start[3] >= 34 for b in reads["val"])
    assert all(t.intersect(v).empty for t in patches["train"] for v in patches["val"])


def test_locations_depend_only_on_seed_epoch_and_index(sparse):
    ds = PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 16, 16), sampler="foreground",
                      augment=AugmentConfig(), samples_per_epoch=20, seed=4)
    forward = [ds.plan(i).start for i in range(20)]
    backward = [ds.plan(i).start for i in reversed(range(20))][::-1]
    assert forward == backward
    again = PatchDataset([VolumePair(sparse[2], sparse[3])], (8, 16, 16), sampler="foreground",
                         augment=AugmentConfig(), samples_per_epoch=20, seed=4)
    assert [again.plan(i).start for i in range(20)] == forward
    again.set_epoch(1)
    assert [again.plan(i).start for i in range(20)] != forward
