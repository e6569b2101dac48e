"""Classical registration against synthetic frames with known motion (landmark errors)."""

from __future__ import annotations

import numpy as np
import pytest

from volumetric.kernels.registration import describe, matrix_from, register, rotation, warp
from volumetric.testing.frames import frames


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
