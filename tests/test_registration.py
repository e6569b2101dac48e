"""Classical registration against synthetic frames with known motion (landmark errors)."""

from __future__ import annotations

import numpy as np
import pytest

from volumetric.kernels.registration import describe, matrix_from, register, rotation, warp
from volumetric.testing.frames import VOXEL_SIZE_XYZ, frames


def _projection(movie, k: int) -> np.ndarray:
    """Channel 0 of frame ``k``, maximum over z, as ``(Y, X)``."""
    return movie.frame(k)[0].max(axis=2).T


def _landmark_errors(movie, reference: int, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean landmark error per frame after registration, and without any."""
    at_ref = movie.positions(reference)[:, [1, 0]]
    after, before = [], []
    for k in range(movie.count):
        matrix, score = register(_projection(movie, reference), _projection(movie, k), model)
        truth = movie.positions(k)[:, [1, 0]]
        mapped = at_ref @ matrix[:2, :2].T + matrix[:2, 2]
        after.append(np.linalg.norm(mapped - truth, axis=1).mean())
        before.append(np.linalg.norm(at_ref - truth, axis=1).mean())
        assert 0.5 < score <= 1.0
    return np.array(after), np.array(before)


@pytest.mark.parametrize("model, motion", [
    ("translation", {"rotation": 0.0}),
    ("rigid", {}),
])
def test_known_motion_is_recovered_below_half_a_pixel(model, motion):
    movie = frames((1, 80, 72, 6), 5, nuclei=100, seed=3, **motion)
    after, before = _landmark_errors(movie, 2, model)
    assert before.max() > 5
    assert after.max() < 0.5


def test_affine_reduces_the_landmark_error_of_affine_warps():
    movie = frames((1, 80, 80, 6), 4, nuclei=100, seed=5, affine=0.08)
    rigid, before = _landmark_errors(movie, 0, "rigid")
    affine, _ = _landmark_errors(movie, 0, "affine")
    assert rigid[1:].mean() > 0.3 and affine.max() < 0.5
    assert affine[1:].mean() < rigid[1:].mean() / 2 < before[1:].mean()


def test_warp_follows_the_matrix_convention_and_keeps_the_dtype():
    image = np.zeros((20, 30), np.uint16)
    image[12, 7] = 1000
    matrix = matrix_from(np.eye(2), np.array([2.0, -3.0]), np.zeros(2))
    out = warp(image, matrix, order=0)
    assert out.dtype == np.uint16 and out[10, 10] == 1000 and out.sum() == 1000


def test_describe_reads_rotation_and_shift():
    m = matrix_from(rotation(np.deg2rad(10)), np.array([1.0, 2.0]), np.array([5.0, 5.0]))
    d = describe(m)
    assert d["rotation_deg"] == pytest.approx(10)
    assert d["a_rr"] == pytest.approx(np.cos(np.deg2rad(10)))


# 3D: (Z, Y, X) volumes, 4x4 matrices over (z, y, x, 1), anisotropic voxels

SPACING_ZYX = np.array(VOXEL_SIZE_XYZ[::-1])


def _volume(movie, k: int) -> np.ndarray:
    """Channel 0 of frame ``k`` as ``(Z, Y, X)``."""
    return movie.frame(k)[0].transpose(2, 1, 0)


def _landmark_errors_3d(movie, reference: int, model: str) -> tuple[np.ndarray, list]:
    """Mean landmark error per frame (voxels, z/y/x) after 3D registration; the matrices."""
    at_ref = movie.positions(reference)[:, ::-1]
    errors, matrices = [], []
    for k in range(movie.count):
        matrix, score = register(_volume(movie, reference), _volume(movie, k), model,
                                 spacing=SPACING_ZYX)
        mapped = at_ref @ matrix[:3, :3].T + matrix[:3, 3]
        errors.append(np.linalg.norm(mapped - movie.positions(k)[:, ::-1], axis=1).mean())
        matrices.append(matrix)
        assert matrix.shape == (4, 4) and 0.5 < score <= 1.0
    return np.array(errors), matrices


def test_3d_rigid_recovers_rotation_tilt_and_shift_below_half_a_voxel():
    movie = frames((1, 64, 64, 12), 4, nuclei=80, seed=3, tilt=8.0)
    before = np.array([np.linalg.norm(movie.positions(k) - movie.positions(1), axis=1).mean()
                       for k in range(4)])
    tilts = [abs(describe(movie.transforms[k][[2, 1, 0, 3]][:, [2, 1, 0, 3]], SPACING_ZYX)
                 ["rotation_y_deg"]) for k in range(4)]
    errors, matrices = _landmark_errors_3d(movie, 1, "rigid")
    assert before.max() > 3 and max(tilts) > 2  # there is out-of-plane motion to recover
    assert errors.max() < 0.5
    for m in matrices:  # rigid in micrometres, not in voxels
        turn = m[:3, :3] * SPACING_ZYX[:, None] / SPACING_ZYX[None, :]
        assert turn @ turn.T == pytest.approx(np.eye(3), abs=1e-9)


def test_3d_translation_and_affine_recover_their_motions():
    shifted = frames((1, 56, 48, 10), 3, nuclei=60, seed=4, rotation=0.0)
    errors, matrices = _landmark_errors_3d(shifted, 0, "translation")
    assert errors.max() < 0.5 and np.allclose(matrices[2][:3, :3], np.eye(3))
    strained = frames((1, 64, 64, 10), 2, nuclei=80, seed=5, affine=0.08)
    rigid, _ = _landmark_errors_3d(strained, 0, "rigid")
    affine, _ = _landmark_errors_3d(strained, 0, "affine")
    assert affine.max() < 0.5 and affine[1] < rigid[1] / 2


def test_3d_warp_and_describe_follow_the_conventions():
    volume = np.zeros((6, 20, 30), np.uint16)
    volume[4, 12, 7] = 1000
    out = warp(volume, matrix_from(np.eye(3), np.array([1.0, 2.0, -3.0]), np.zeros(3)), order=0)
    assert out.dtype == np.uint16 and out[3, 10, 10] == 1000 and out.sum() == 1000
    tilt = np.deg2rad(5)  # about y, in micrometres: x tilts into z
    physical = np.array([[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0],
                         [-np.sin(tilt), 0, np.cos(tilt)]])
    linear = physical * SPACING_ZYX[None, :] / SPACING_ZYX[:, None]
    turn = rotation(np.deg2rad(10))
    linear = np.block([[np.ones((1, 1)), np.zeros((1, 2))], [np.zeros((2, 1)), turn]]) @ linear
    m = matrix_from(linear, np.array([0.5, 1.0, 2.0]), np.zeros(3))
    d = describe(m, SPACING_ZYX)
    assert (d["offset_z"], d["offset_y"], d["offset_x"]) == (0.5, 1.0, 2.0)
    assert d["rotation_z_deg"] == pytest.approx(10) and d["rotation_y_deg"] == pytest.approx(5)
    assert d["rotation_x_deg"] == pytest.approx(0, abs=1e-9) and d["a_yx"] == linear[1, 2]


def test_register_refuses_mismatched_arrays_and_spacing():
    with pytest.raises(ValueError, match="same-shaped 2D or 3D"):
        register(np.zeros((4, 8, 8)), np.zeros((4, 8, 9)))
    with pytest.raises(ValueError, match="spacing"):
        register(np.zeros((4, 8, 8)), np.zeros((4, 8, 8)), spacing=(1.0, 1.0))
