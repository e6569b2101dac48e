"""Augmentation kernel: warping a patch read with its margin equals warping the whole volume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from volumetric.errors import InputError
from volumetric.kernels.augment import (
    SWITCHES,
    AugmentConfig,
    adjust_gamma,
    adjust_intensity,
    blur,
    elastic_from_alpha_sigma,
    elastic_displacement,
    flip_rotate,
    sample_augmentation,
    source_box,
    source_coordinates,
    warp,
)

STRONG = AugmentConfig(spatial_probability=1.0, rotate_degrees=30, shear=0.2,
                       elastic_magnitude=4.0, elastic_spacing=8)


def _whole_volume_warp(volume, params, shape, origin, order):
    """Reference: one displacement field over the whole volume, scipy warp, crop."""
    ndim = volume.ndim
    grid = np.indices(volume.shape, dtype=float)
    field = np.zeros_like(grid)
    patch = tuple(slice(o, o + s) for o, s in zip(origin, shape))
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    offsets = np.indices(shape, dtype=float) - centre.reshape(-1, *[1] * ndim)
    moved = offsets if params.matrix is None else np.tensordot(params.matrix, offsets, axes=1)
    if params.control is not None:
        moved = moved + elastic_displacement(params.control, shape, params.control_spacing)
    field[(slice(None), *patch)] = moved - offsets
    warped = ndimage.map_coordinates(volume, grid + field, order=order, mode="mirror",
                                     prefilter=False)
    return warped[patch]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.5, 0.5)])
def test_warp_of_patch_with_margin_equals_whole_volume_warp(spacing):
    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((28, 36, 40)), 1.5)
    labels = rng.integers(0, 5, volume.shape).astype(np.uint16)
    shape = (12, 16, 16)
    # Inside, against the lower faces and against the upper faces (mirroring).
    for origin in [(8, 10, 12), (0, 0, 0), (16, 20, 24)]:
        for index in range(3):
            params = sample_augmentation(np.random.default_rng(index), STRONG, shape, spacing)
            assert params.warps
            coords = source_coordinates(params, shape, origin, volume.shape)
            box = source_box(coords, volume.shape)
            assert box.size < volume.size
            local = coords - np.reshape(box.start, (3, 1, 1, 1))
            got = warp(volume[box.slices][None], local, order=1)[0]
            want = _whole_volume_warp(volume, params, shape, origin, order=1)
            np.testing.assert_allclose(got, want, atol=1e-6)
            got_labels = warp(labels[box.slices][None], local, order=0)[0]
            want_labels = _whole_volume_warp(labels, params, shape, origin, order=0)
            np.testing.assert_array_equal(got_labels, want_labels)


def test_2d_warp_equals_whole_image_warp():
    rng = np.random.default_rng(1)
    image = rng.random((50, 70))
    shape = (24, 24)
    for origin in [(0, 40), (13, 7)]:
        params = sample_augmentation(np.random.default_rng(5), STRONG, shape, (1.0, 1.0))
        coords = source_coordinates(params, shape, origin, image.shape)
        box = source_box(coords, image.shape)
        got = warp(image[box.slices][None], coords - np.reshape(box.start, (2, 1, 1)), order=1)
        np.testing.assert_allclose(got[0], _whole_volume_warp(image, params, shape, origin, 1),
                                   atol=1e-6)


def test_elastic_field_passes_through_control_points():
    control = np.random.default_rng(2).normal(size=(3, 3, 4, 5))
    field = elastic_displacement(control, (17, 25, 33), 8)
    np.testing.assert_allclose(field[:, ::8, ::8, ::8], control, atol=1e-9)
    assert np.abs(np.diff(field, axis=3)).max() < np.abs(control).max()  # smooth, not blocky


def test_rotation_is_physical_for_anisotropic_voxels():
    config = AugmentConfig(spatial_probability=1.0, shear=0.0, elastic_magnitude=0.0)
    spacing = np.array([4.0, 1.0, 0.5])
    params = sample_augmentation(np.random.default_rng(3), config, (8, 8, 8), spacing)
    physical = np.diag(spacing) @ params.matrix @ np.diag(1 / spacing)
    np.testing.assert_allclose(physical @ physical.T, np.eye(3), atol=1e-12)
    assert not np.allclose(params.matrix, np.eye(3))
    assert params.control is None


def test_switches_and_draws():
    shape, spacing = (8, 16, 16), (1.0, 1.0, 1.0)
    off = AugmentConfig(flip=False, rotate90=False, spatial_probability=0.0,
                        intensity_probability=0.0)
    params = sample_augmentation(np.random.default_rng(0), off, shape, spacing)
    assert not params.warps and params.flips == (False,) * 3 and params.quarter_turns == 0
    assert (params.scale, params.shift, params.noise_std) == (1.0, 0.0, 0.0)
    # Switching augmentations off leaves the other draws unchanged.
    full = sample_augmentation(np.random.default_rng(0), AugmentConfig(), shape, spacing)
    no_flip = sample_augmentation(np.random.default_rng(0), AugmentConfig(flip=False), shape,
                                  spacing)
    assert no_flip.quarter_turns == full.quarter_turns and no_flip.scale == full.scale
    turns = {sample_augmentation(np.random.default_rng(i), AugmentConfig(), (4, 8, 6),
                                 spacing).quarter_turns for i in range(40)}
    assert turns == {0, 2}  # a non-square plane only turns by 180 degrees
    seen = {sample_augmentation(np.random.default_rng(i), AugmentConfig(), shape,
                                spacing).quarter_turns for i in range(40)}
    assert seen == {0, 1, 2, 3}


def test_flip_rotate_and_intensity():
    array = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    params = sample_augmentation(np.random.default_rng(0), AugmentConfig(), (3, 4, 4),
                                 (1.0, 1.0, 1.0))
    params = type(params)(**{**params.__dict__, "flips": (True, False, True), "quarter_turns": 1,
                             "scale": 2.0, "shift": 0.5, "noise_std": 0.0})
    np.testing.assert_array_equal(flip_rotate(array, params),
                                  np.rot90(array[:, ::-1, :, ::-1], 1, axes=(2, 3)))
    np.testing.assert_allclose(adjust_intensity(array, params), array * 2 + 0.5)
    noisy = type(params)(**{**params.__dict__, "scale": 1.0, "shift": 0.0, "noise_std": 0.1})
    noise = adjust_intensity(np.zeros((1, 32, 32, 32)), noisy)
    assert abs(noise.std() - 0.1) < 0.005
    np.testing.assert_array_equal(noise, adjust_intensity(np.zeros((1, 32, 32, 32)), noisy))


@pytest.mark.parametrize("bad", [{"spatial_probability": 1.5}, {"noise_std": -1.0},
                                 {"elastic_spacing": 0}, {"rotate_degrees": float("nan")},
                                 {"rotate_degrees": -20}, {"zoom": (1.2, 0.8)},
                                 {"gamma": (0.0, 1.5)}, {"blur_sigma": -1.0},
                                 {"gamma_probability": 2.0}])
def test_bad_config(bad):
    with pytest.raises(InputError):
        AugmentConfig(**bad)


def test_switching_augmentations_off_by_name():
    strong = replace(STRONG, intensity_probability=1.0)
    rng_seed, shape, spacing = [1], (8, 12, 12), (2.0, 1.0, 1.0)
    full = sample_augmentation(np.random.default_rng(rng_seed), strong, shape, spacing)
    assert any(full.flips) and full.quarter_turns and full.warps and full.scale != 1
    config = strong.without(["flip", "rotate90", "rotate", "shear"])
    partial = sample_augmentation(np.random.default_rng(rng_seed), config, shape, spacing)
    assert not any(partial.flips) and partial.quarter_turns == 0 and partial.matrix is None
    np.testing.assert_array_equal(partial.control, full.control)  # elastic stays on
    off = strong.without(list(SWITCHES))
    none = sample_augmentation(np.random.default_rng(rng_seed), off, shape, spacing)
    assert not none.warps and (none.scale, none.shift, none.noise_std) == (1.0, 0.0, 0.0)
    with pytest.raises(InputError, match="unknown augmentation 'sharpen'; choose one of flip"):
        STRONG.without(["sharpen"])


@pytest.mark.parametrize("degrees", [20.0, 45.0])
def test_rotations_stay_within_the_range(degrees):
    config = AugmentConfig(spatial_probability=1.0, rotate_degrees=degrees, shear=0.0)
    angles = []
    for seed in range(200):
        matrix = sample_augmentation(np.random.default_rng(seed), config, (16, 16),
                                     (1.0, 1.0)).matrix
        angles.append(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    assert max(np.abs(angles)) <= degrees
    assert max(np.abs(angles)) > 0.9 * degrees  # the whole range is used


def test_zoom_scales_the_warp_and_keeps_other_draws():
    config = AugmentConfig(spatial_probability=1.0, rotate_degrees=0.0, shear=0.0,
                           zoom=(0.5, 2.0))
    zooms = [1 / sample_augmentation(np.random.default_rng(seed), config, (8, 16, 16),
                                     (1.0, 1.0, 1.0)).matrix[0, 0] for seed in range(100)]
    assert 0.5 <= min(zooms) < 0.7 and 1.5 < max(zooms) <= 2.0
    zoomed = sample_augmentation(np.random.default_rng(3), replace(STRONG, zoom=(0.8, 1.25)),
                                 (8, 16, 16), (1.0, 1.0, 1.0))
    plain = sample_augmentation(np.random.default_rng(3), STRONG, (8, 16, 16), (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(zoomed.control, plain.control)
    assert zoomed.flips == plain.flips and zoomed.noise_seed == plain.noise_seed


def test_gamma_and_blur_change_the_image_only_with_their_own_probabilities():
    config = AugmentConfig(gamma=(0.5, 2.0), gamma_probability=1.0, blur_sigma=2.0,
                           blur_probability=1.0, intensity_probability=0.0)
    params = sample_augmentation(np.random.default_rng(1), config, (16, 16), (1.0, 1.0))
    assert 0.5 <= params.gamma <= 2.0 and params.gamma != 1.0
    assert len(params.blur_sigma) == 2 and 0 < params.blur_sigma[0] <= 2.0
    rng = np.random.default_rng(0)
    image = rng.random((1, 16, 16)).astype(np.float32)
    out = adjust_intensity(image, params)
    expected = ndimage.gaussian_filter(adjust_gamma(image, params.gamma)[0], params.blur_sigma,
                                       mode="mirror")
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, image)
    # Off by default and by name; the other draws do not move.
    default = sample_augmentation(np.random.default_rng(1), AugmentConfig(), (16, 16), (1, 1))
    assert default.gamma == 1.0 and default.blur_sigma == ()
    off = sample_augmentation(np.random.default_rng(1), config.without(["gamma", "blur"]),
                              (16, 16), (1.0, 1.0))
    assert off.gamma == 1.0 and off.blur_sigma == () and off.flips == params.flips
    never = replace(config, gamma_probability=0.0, blur_probability=0.0)
    assert {(p.gamma, p.blur_sigma) for p in (
        sample_augmentation(np.random.default_rng(i), never, (16, 16), (1, 1))
        for i in range(20))} == {(1.0, ())}


def test_gamma_keeps_the_range_and_blur_respects_voxel_size():
    image = np.linspace(-1, 3, 64, dtype=np.float32).reshape(1, 8, 8)
    out = adjust_gamma(image, 2.0)
    assert out.min() == image.min() and out.max() == image.max()
    assert np.all(np.diff(out.ravel()) >= 0) and not np.allclose(out, image)
    np.testing.assert_array_equal(adjust_gamma(np.ones((1, 4, 4)), 2.0), np.ones((1, 4, 4)))
    config = AugmentConfig(blur_sigma=2.0, blur_probability=1.0)
    params = sample_augmentation(np.random.default_rng(0), config, (4, 8, 8), (4.0, 1.0, 1.0))
    z, y, x = params.blur_sigma
    assert y == x and z == pytest.approx(y / 4)
    np.testing.assert_array_equal(blur(image, ()), image)


def test_elastic_alpha_sigma_mapping():
    magnitude, spacing = elastic_from_alpha_sigma(34, 4)
    assert spacing == 8
    field = ndimage.gaussian_filter(np.random.default_rng(0).uniform(-1, 1, (512, 512)), 4,
                                    mode="wrap") * 34
    assert magnitude == pytest.approx(field.std(), rel=0.05)
    with pytest.raises(InputError, match="--elastic"):
        elastic_from_alpha_sigma(34, 0)


def test_patches_with_gamma_and_blur_keep_their_targets(tmp_path):
    from ome_images import write_image

    from volumetric.train.dataset import PatchDataset, VolumePair

    rng = np.random.default_rng(0)
    target = (rng.random((32, 32)) > 0.5).astype(np.uint8)
    raw = write_image(tmp_path / "raw.zarr", (target * 100 + rng.integers(0, 50, target.shape))
                      .astype(np.uint16))
    mask = write_image(tmp_path / "mask.zarr", target)
    plain = AugmentConfig(flip=False, rotate90=False, spatial_probability=0.0,
                          intensity_probability=0.0)
    knobs = replace(plain, gamma=(0.5, 2.0), gamma_probability=1.0, blur_sigma=1.5,
                    blur_probability=1.0)
    sets = [PatchDataset([VolumePair(raw, mask)], (1, 16, 16), augment=config,
                         samples_per_epoch=4, seed=5) for config in (plain, knobs)]
    for i in range(4):
        before, after = sets[0][i], sets[1][i]
        assert torch.equal(before["target"], after["target"])
        assert not torch.allclose(before["image"], after["image"])
