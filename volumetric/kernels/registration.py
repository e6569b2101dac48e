"""Classical 2D image registration: phase-correlation start, then NCC refinement.

A transform is a 3x3 homogeneous matrix ``M`` in pixel coordinates
``(row, col, 1)`` that maps a position of the *reference* (fixed) image to
the same structure's position in the *moving* image. Warping the moving
image with ``M`` (``aligned[p] = moving[M @ p]``, scipy's
``affine_transform`` convention) lines it up with the reference.

Models, all about the image centre ``c`` (``q = A (p - c) + c + t``):

- ``translation``: ``A = I``;
- ``rigid``: ``A`` a rotation;
- ``affine``: any ``A``.

The start comes from ``skimage.registration.phase_cross_correlation``; for
``rigid`` and ``affine`` it is run on a grid of rotations of a downscaled
copy (phase correlation alone finds no rotation) and the rotation with the
best normalised cross-correlation (NCC) wins. The parameters are then refined
at full resolution by maximising the NCC of lightly smoothed images with
``scipy.optimize.minimize`` (Powell, derivative free), warping with
``scipy.ndimage.affine_transform``: simple, robust and without hand-written
optimisers.
"""

from __future__ import annotations

import numpy as np

MODELS = ("translation", "rigid", "affine")
ANGLES_DEG = np.arange(-60.0, 60.1, 4.0)
COARSE_SIZE = 128
SMOOTH_SIGMA = 1.0


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two same-shaped images (1: identical up to gain/offset)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def warp(image: np.ndarray, matrix: np.ndarray, *, order: int = 1, mode: str = "constant",
         cval: float = 0.0) -> np.ndarray:
    """``image`` (2D) warped by ``matrix`` so that ``out[p] = image[matrix @ p]``; same dtype."""
    from scipy.ndimage import affine_transform

    out = affine_transform(image.astype(np.float64, copy=False), matrix[:2, :2],
                           offset=matrix[:2, 2], order=order, mode=mode, cval=cval)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


def matrix_from(linear: np.ndarray, shift: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The 3x3 matrix of ``q = linear (p - centre) + centre + shift``."""
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = centre + shift - linear @ centre
    return m


def rotation(angle: float) -> np.ndarray:
    """The 2x2 rotation by ``angle`` radians in ``(row, col)`` coordinates."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _unpack(model: str, x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``(linear, shift)`` from the optimiser's parameters (linear terms scaled to pixels)."""
    if model == "translation":
        return np.eye(2), x[:2]
    if model == "rigid":
        return rotation(x[0] / radius), x[1:3]
    return np.eye(2) + x[:4].reshape(2, 2) / radius, x[4:6]


def _pack(model: str, linear: np.ndarray, shift: np.ndarray, radius: float) -> np.ndarray:
    if model == "translation":
        return np.asarray(shift, dtype=np.float64)
    if model == "rigid":
        return np.array([np.arctan2(linear[1, 0], linear[0, 0]) * radius, *shift])
    return np.array([*((linear - np.eye(2)) * radius).ravel(), *shift])


def _coarse_start(fixed: np.ndarray, moving: np.ndarray,
                  model: str) -> tuple[np.ndarray, np.ndarray]:
    """``(linear, shift)`` at full resolution from phase correlation on a downscaled copy."""
    from skimage.registration import phase_cross_correlation
    from skimage.transform import downscale_local_mean

    factor = max(1, int(np.ceil(max(fixed.shape) / COARSE_SIZE)))
    small_f = downscale_local_mean(fixed, (factor, factor))
    small_m = downscale_local_mean(moving, (factor, factor))
    centre = (np.asarray(small_f.shape) - 1) / 2
    angles = [0.0] if model == "translation" else np.deg2rad(ANGLES_DEG)
    best = (-np.inf, np.eye(2), np.zeros(2))
    for angle in angles:
        linear = rotation(angle)
        turned = warp(small_m, matrix_from(linear, np.zeros(2), centre), mode="nearest")
        shift, _, _ = phase_cross_correlation(small_f, turned, upsample_factor=4,
                                              normalization=None)
        t = -linear @ shift
        score = ncc(small_f, warp(small_m, matrix_from(linear, t, centre), mode="nearest"))
        if score > best[0]:
            best = (score, linear, t * factor)
    return best[1], best[2]


def register(fixed: np.ndarray, moving: np.ndarray,
             model: str = "rigid") -> tuple[np.ndarray, float]:
    """Register the 2D image ``moving`` to ``fixed``.

    Parameters
    ----------
    fixed, moving : ndarray, shape (Y, X)
        The reference and the image to align, same shape.
    model : {"translation", "rigid", "affine"}

    Returns
    -------
    matrix : ndarray, shape (3, 3)
        Maps reference positions ``(row, col, 1)`` to positions in ``moving``
        (module docstring).
    score : float
        NCC of ``fixed`` and ``moving`` warped by ``matrix``.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.optimize import minimize

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    fixed = fixed.astype(np.float64)
    moving = moving.astype(np.float64)
    centre = (np.asarray(fixed.shape) - 1) / 2
    radius = max(fixed.shape) / 2
    smooth_f = gaussian_filter(fixed, SMOOTH_SIGMA)
    smooth_m = gaussian_filter(moving, SMOOTH_SIGMA)
    linear, shift = _coarse_start(smooth_f, smooth_m, model)

    for stage in MODELS[MODELS.index("rigid" if model == "affine" else model)
                        :MODELS.index(model) + 1]:
        def cost(x: np.ndarray, stage: str = stage) -> float:
            m = matrix_from(*_unpack(stage, x, radius), centre)
            return -ncc(smooth_f, warp(smooth_m, m, mode="nearest"))

        result = minimize(cost, _pack(stage, linear, shift, radius), method="Powell",
                          options={"xtol": 1e-3, "ftol": 1e-7})
        linear, shift = _unpack(stage, result.x, radius)
    matrix = matrix_from(linear, shift, centre)
    return matrix, ncc(fixed, warp(moving, matrix, mode="nearest"))


def describe(matrix: np.ndarray) -> dict[str, float]:
    """Readable parameters of a 3x3 matrix: its offset column, rotation angle and linear part."""
    a = matrix[:2, :2]
    return {
        "offset_row": float(matrix[0, 2]), "offset_col": float(matrix[1, 2]),
        "rotation_deg": float(np.degrees(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))),
        "a_rr": float(a[0, 0]), "a_rc": float(a[0, 1]),
        "a_cr": float(a[1, 0]), "a_cc": float(a[1, 1]),
    }
