"""Augmentation kernel: warping a patch read with its margin equals warping the whole volume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from volumetric.errors import InputError
from volumetric.kernels.augment import (
    SWITCHES,
    AugmentConfig,
    adjust_intensity,
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
                                 {"elastic_spacing": 0}, {"rotate_degrees": float("nan")}])
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
    with pytest.raises(InputError, match="unknown augmentation 'blur'; choose one of flip"):
        STRONG.without(["blur"])
