"""PatchDataset: lazy reads, normalisation, augmentation identical on image and target, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ome_images import write_image
from scipy import ndimage
from torch.utils.data import DataLoader

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.intensity import intensity_stats
from volumetric.kernels.augment import AugmentConfig, elastic_displacement, flip_rotate
from volumetric.kernels.normalize import normalize
from volumetric.train.dataset import PatchDataset, VolumePair

SHAPE = (20, 36, 44)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Raw (uint16), labels (uint8), clipped distance map (float32) and loss mask."""
    root = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(0)
    raw = (ndimage.gaussian_filter(rng.random(SHAPE), 2) * 4000).astype(np.uint16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:12, 10:20, 8:30] = 1
    labels[14:18, 25:33, 30:40] = 2
    distance = np.minimum(ndimage.distance_transform_edt(labels == 0), 5).astype(np.float32)
    mask = (rng.random(SHAPE) > 0.2).astype(np.uint8)
    arrays = {"raw": raw, "labels": labels, "distance": distance, "mask": mask}
    paths = {k: write_image(root / f"{k}.zarr", v, voxel_size=(2.0, 0.5, 0.5), chunks=(8, 16, 16))
             for k, v in arrays.items()}
    return arrays, paths


def _mirror_warp(volume, params, shape, origin, order):
    """Reference for one warped patch: scipy on the whole volume, mirrored at its faces."""
    ndim = len(shape)
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    offsets = np.indices(shape, dtype=float) - centre.reshape(-1, *[1] * ndim)
    coords = offsets if params.matrix is None else np.tensordot(params.matrix, offsets, axes=1)
    if params.control is not None:
        coords = coords + elastic_displacement(params.control, shape, params.control_spacing)
    coords = coords + (np.asarray(origin) + centre).reshape(-1, *[1] * ndim)
    return ndimage.map_coordinates(volume, coords, order=order, mode="mirror", prefilter=False)


def test_patches_without_augmentation_are_exact_crops(volumes):
    arrays, paths = volumes
    ds = PatchDataset([VolumePair(paths["raw"], paths["labels"], paths["mask"])], (8, 16, 16),
                      samples_per_epoch=12)
    stats = intensity_stats(arrays["raw"])
    for i in range(len(ds)):
        item = ds[i]
        pair, *start = item["location"].tolist()
        box = Box.from_shape((8, 16, 16), start)
        assert pair == 0 and item["image"].shape == (1, 8, 16, 16)
        assert item["image"].dtype == item["target"].dtype == item["mask"].dtype == torch.float32
        np.testing.assert_allclose(item["image"][0].numpy(),
                                   normalize(arrays["raw"][box.slices], stats, "percentile"))
        np.testing.assert_array_equal(item["target"][0].numpy(), arrays["labels"][box.slices])
        np.testing.assert_array_equal(item["mask"][0].numpy(), arrays["mask"][box.slices])


@pytest.mark.parametrize("target", ["labels", "distance"])
def test_augmentation_equals_whole_volume_warp_on_image_target_and_mask(volumes, target):
    arrays, paths = volumes
    config = AugmentConfig(spatial_probability=1.0, rotate_degrees=25, shear=0.1,
                           elastic_magnitude=3.0, elastic_spacing=8, intensity_probability=1.0)
    ds = PatchDataset([VolumePair(paths["raw"], paths[target], paths["mask"])], (8, 16, 16),
                      augment=config, samples_per_epoch=6, seed=3)
    image = normalize(arrays["raw"], intensity_stats(arrays["raw"]), "percentile")
    for i in range(len(ds)):
        plan, item = ds.plan(i), ds[i]
        params = plan.augment
        assert params.warps and params.noise_std > 0
        want_target = _mirror_warp(arrays[target].astype(np.float32), params, (8, 16, 16),
                                   plan.start, order=0 if target == "labels" else 1)
        got_target = item["target"].numpy()
        np.testing.assert_allclose(got_target, flip_rotate(want_target[None], params), atol=1e-5)
        want_mask = _mirror_warp(arrays["mask"], params, (8, 16, 16), plan.start, order=0)
        np.testing.assert_array_equal(item["mask"].numpy(), flip_rotate(want_mask[None], params))
        want_image = flip_rotate(_mirror_warp(image, params, (8, 16, 16), plan.start, 1)[None],
                                 params)
        # The image also got intensity changes and noise; the targets did not.
        residual = item["image"].numpy() - (want_image * params.scale + params.shift)
        assert abs(residual.std() - params.noise_std) < 0.01
        if target == "labels":
            assert set(np.unique(got_target)) <= {0.0, 1.0, 2.0}
        else:
            assert got_target.min() >= 0 and got_target.max() <= 5


def test_two_dimensional_patches_images_and_channels(volumes, tmp_path):
    arrays, paths = volumes
    ds = PatchDataset([VolumePair(paths["raw"], paths["labels"])], (1, 16, 16),
                      augment=AugmentConfig(spatial_probability=1.0), samples_per_epoch=4)
    item = ds[0]
    assert item["image"].shape == item["target"].shape == (1, 16, 16)
    assert item["location"][1] < SHAPE[0]

    rng = np.random.default_rng(1)
    czyx = rng.integers(0, 100, (3, 6, 20, 24)).astype(np.uint16)
    raw = write_image(tmp_path / "c.zarr", czyx, axes="czyx", chunks=(1, 6, 8, 8))
    target = write_image(tmp_path / "t.zarr", (czyx[0] > 50).astype(np.uint8), chunks=(6, 8, 8))
    both = PatchDataset([VolumePair(raw, target)], (4, 8, 8), samples_per_epoch=2,
                        normalize="none")
    item = both[0]
    _, *start = item["location"].tolist()
    box = Box.from_shape((4, 8, 8), start)
    np.testing.assert_array_equal(item["image"].numpy(), czyx[(slice(None), *box.slices)])
    one = PatchDataset([VolumePair(raw, target, channel=2)], (4, 8, 8), samples_per_epoch=2)
    assert one[0]["image"].shape == (1, 4, 8, 8)

    tyx = rng.integers(0, 100, (2, 30, 40)).astype(np.uint16)
    image = write_image(tmp_path / "tyx.zarr", tyx, axes="tyx", chunks=(1, 16, 16))
    mask = write_image(tmp_path / "m.zarr", (tyx[1] > 50).astype(np.uint8), chunks=(16, 16))
    flat = PatchDataset([VolumePair(image, mask, t=1)], (12, 12), sampler="grid",
                        normalize="none")
    item = flat[0]
    assert item["image"].shape == (1, 12, 12) and item["location"].tolist() == [0, 0, 0, 0]
    np.testing.assert_array_equal(item["image"][0].numpy(), tyx[1, :12, :12])


def test_bad_input(volumes, tmp_path):
    arrays, paths = volumes
    other = write_image(tmp_path / "o.zarr", arrays["labels"][:, :, :40])
    with pytest.raises(InputError, match="spatial shape"):
        PatchDataset([VolumePair(paths["raw"], other)], (4, 8, 8))
    coarse = write_image(tmp_path / "v.zarr", arrays["labels"], voxel_size=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="voxel size"):
        PatchDataset([VolumePair(paths["raw"], coarse)], (4, 8, 8))
    with pytest.raises(InputError, match="larger than raw"):
        PatchDataset([VolumePair(paths["raw"], paths["labels"])], (32, 16, 16))
    empty = tmp_path / "cubes.json"
    empty.write_text('{"cube_shape": [8, 16, 16], "cubes": []}')
    with pytest.raises(InputError, match="is empty"):
        PatchDataset([VolumePair(paths["raw"], paths["labels"])], (4, 8, 8), cubes=str(empty))
    with pytest.raises(InputError, match="mask"):
        PatchDataset([VolumePair(paths["raw"], paths["labels"], paths["mask"]),
                      VolumePair(paths["raw"], paths["labels"])], (4, 8, 8))
    with pytest.raises(InputError, match="3D but raw"):
        flat = write_image(tmp_path / "f.zarr", arrays["raw"][0])
        PatchDataset([VolumePair(flat, flat)], (4, 8, 8))


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_after_parent_read_give_the_serial_samples(volumes, start_method):
    arrays, paths = volumes
    ds = PatchDataset([VolumePair(paths["raw"], paths["distance"], paths["mask"])], (8, 16, 16),
                      sampler="foreground", foreground="<2", augment=AugmentConfig(),
                      samples_per_epoch=10, seed=7)
    ds.set_epoch(2)
    serial = [ds[i] for i in range(len(ds))]  # the parent reads every array first
    workers = 2 if start_method == "fork" else 1  # spawn: each worker imports torch anew
    loader = DataLoader(ds, batch_size=3, num_workers=workers, multiprocessing_context=start_method,
                        timeout=120)
    batches = list(loader)
    for key in ("image", "target", "mask", "location"):
        torch.testing.assert_close(torch.cat([b[key] for b in batches]),
                                   torch.stack([s[key] for s in serial]), rtol=0, atol=0)
    ds.set_epoch(3)
    assert not torch.equal(ds[0]["image"], serial[0]["image"])
    ds.set_epoch(2)
    torch.testing.assert_close(ds[0]["image"], serial[0]["image"], rtol=0, atol=0)
