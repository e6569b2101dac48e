"""Classical image registration: phase-correlation start, then NCC refinement.

A transform of a 2D image is a 3x3 homogeneous matrix ``M`` in pixel
coordinates ``(row, col, 1)``, of a 3D ``(Z, Y, X)`` volume a 4x4 one in voxel
coordinates ``(z, y, x, 1)``; it maps a position of the *reference* (fixed)
image to the same structure's position in the *moving* image. Warping the
moving image with ``M`` (``aligned[p] = moving[M @ p]``, scipy's
``affine_transform`` convention) lines it up with the reference.

Models, all about the image centre ``c`` (``q = A (p - c) + c + t``):

- ``translation``: ``A = I``;
- ``rigid``: ``A`` a rotation in physical units (``S^-1 R S`` with ``S`` the
  diagonal of the voxel size, so anisotropic voxels move rigidly in
  micrometres; ``A = R`` when the voxels are isotropic);
- ``affine``: any ``A``.

In 2D, the start comes from ``skimage.registration.phase_cross_correlation``;
for ``rigid`` and ``affine`` it is run on a grid of rotations of a downscaled
copy (phase correlation alone finds no rotation) and the rotation with the
best normalised cross-correlation (NCC) wins. The parameters are then refined
at full resolution by maximising the NCC of lightly smoothed images with
``scipy.optimize.minimize`` (Powell, derivative free), warping with
``scipy.ndimage.affine_transform``: simple, robust and without hand-written
optimisers. Volumes are registered the same way, with a pyramid of
resolutions for the refinement (:mod:`volumetric.kernels.registration3d`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volumetric.kernels.casting import to_dtype

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
    """``image`` (2D or 3D) warped by ``matrix`` so that ``out[p] = image[matrix @ p]``.

    ``matrix`` is ``(ndim + 1)`` square, homogeneous; the result has the
    image's shape and dtype (integers rounded and clipped).
    """
    from scipy.ndimage import affine_transform

    n = image.ndim
    out = affine_transform(image.astype(np.float64, copy=False), matrix[:n, :n],
                           offset=matrix[:n, n], order=order, mode=mode, cval=cval)
    return to_dtype(out, image.dtype)


def matrix_from(linear: np.ndarray, shift: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The ``(n + 1)`` square matrix of ``q = linear (p - centre) + centre + shift``, n axes."""
    n = len(centre)
    m = np.eye(n + 1)
    m[:n, :n] = linear
    m[:n, n] = centre + shift - linear @ centre
    return m


def to_voxels(linear: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """A linear map of physical coordinates as one of voxel coordinates: ``S^-1 L S``."""
    return linear * (spacing[None, :] / spacing[:, None])  # exactly linear when isotropic


def to_physical(linear: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """A linear map of voxel coordinates as one of physical coordinates: ``S L S^-1``."""
    return linear * (spacing[:, None] / spacing[None, :])


def rotation(angle: float) -> np.ndarray:
    """The 2x2 rotation by ``angle`` radians in ``(row, col)`` coordinates."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _unpack(model: str, x: np.ndarray, radius: float,
            spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(linear, shift)`` from the optimiser's parameters (linear terms scaled to pixels)."""
    if model == "translation":
        return np.eye(2), x[:2]
    if model == "rigid":
        return to_voxels(rotation(x[0] / radius), spacing), x[1:3]
    return np.eye(2) + x[:4].reshape(2, 2) / radius, x[4:6]


def _pack(model: str, linear: np.ndarray, shift: np.ndarray, radius: float,
          spacing: np.ndarray) -> np.ndarray:
    if model == "translation":
        return np.asarray(shift, dtype=np.float64)
    if model == "rigid":
        turn = to_physical(linear, spacing)
        return np.array([np.arctan2(turn[1, 0], turn[0, 0]) * radius, *shift])
    return np.array([*((linear - np.eye(2)) * radius).ravel(), *shift])


def _coarse_start(fixed: np.ndarray, moving: np.ndarray, model: str,
                  spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        linear = to_voxels(rotation(angle), spacing)
        turned = warp(small_m, matrix_from(linear, np.zeros(2), centre), mode="nearest")
        shift, _, _ = phase_cross_correlation(small_f, turned, upsample_factor=4,
                                              normalization=None)
        t = -linear @ shift
        score = ncc(small_f, warp(small_m, matrix_from(linear, t, centre), mode="nearest"))
        if score > best[0]:
            best = (score, linear, t * factor)
    return best[1], best[2]


def register(fixed: np.ndarray, moving: np.ndarray, model: str = "rigid", *,
             spacing: Sequence[float] | None = None) -> tuple[np.ndarray, float]:
    """Register the 2D image or 3D volume ``moving`` to ``fixed``.

    Parameters
    ----------
    fixed, moving : ndarray, shape (Y, X) or (Z, Y, X)
        The reference and the image to align, same shape.
    model : {"translation", "rigid", "affine"}
    spacing : sequence of float, optional
        The pixel or voxel size per axis (any unit; default 1 per axis):
        rotations are rigid in these units.

    Returns
    -------
    matrix : ndarray, shape (3, 3) or (4, 4)
        Maps reference positions ``(row, col, 1)`` (2D) or ``(z, y, x, 1)``
        (3D), in pixels or voxels, to positions in ``moving`` (module docstring).
    score : float
        NCC of ``fixed`` and ``moving`` warped by ``matrix``.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.optimize import minimize

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    if fixed.shape != moving.shape or fixed.ndim not in (2, 3):
        raise ValueError(f"fixed and moving must be same-shaped 2D or 3D arrays, "
                         f"got {fixed.shape} and {moving.shape}")
    spacing = np.ones(fixed.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (fixed.ndim,) or not (spacing > 0).all():
        raise ValueError(f"spacing {spacing} needs {fixed.ndim} positive values")
    if fixed.ndim == 3:
        from volumetric.kernels.registration3d import register3d

        return register3d(fixed, moving, model, spacing)
    fixed = fixed.astype(np.float64)
    moving = moving.astype(np.float64)
    centre = (np.asarray(fixed.shape) - 1) / 2
    radius = max(fixed.shape) / 2
    smooth_f = gaussian_filter(fixed, SMOOTH_SIGMA)
    smooth_m = gaussian_filter(moving, SMOOTH_SIGMA)
    linear, shift = _coarse_start(smooth_f, smooth_m, model, spacing)

    for stage in MODELS[MODELS.index("rigid" if model == "affine" else model)
                        :MODELS.index(model) + 1]:
        def cost(x: np.ndarray, stage: str = stage) -> float:
            m = matrix_from(*_unpack(stage, x, radius, spacing), centre)
            return -ncc(smooth_f, warp(smooth_m, m, mode="nearest"))

        result = minimize(cost, _pack(stage, linear, shift, radius, spacing), method="Powell",
                          options={"xtol": 1e-3, "ftol": 1e-7})
        linear, shift = _unpack(stage, result.x, radius, spacing)
    matrix = matrix_from(linear, shift, centre)
    return matrix, ncc(fixed, warp(moving, matrix, mode="nearest"))


def describe(matrix: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, float]:
    """Readable parameters of a 3x3 or 4x4 matrix: offsets, rotation angles and linear part.

    Parameters
    ----------
    matrix : ndarray, shape (3, 3) or (4, 4)
        A transform (module docstring).
    spacing : sequence of float, optional
        The pixel or voxel size per axis (default 1 per axis); angles are
        those of the nearest rotation in these units.

    Returns
    -------
    dict
        2D: ``offset_row``, ``offset_col`` (the offset column), ``rotation_deg``,
        ``a_rr``, ``a_rc``, ``a_cr``, ``a_cc`` (the linear part). 3D:
        ``offset_z``, ``offset_y``, ``offset_x``; ``rotation_z_deg``,
        ``rotation_y_deg``, ``rotation_x_deg``, the angles about the ``z``,
        then ``y``, then ``x`` axis (``R = Rz Ry Rx``; ``rotation_z_deg`` is the
        in-plane one); ``a_zz`` ... ``a_xx`` (row, then column axis).
    """
    n = matrix.shape[0] - 1
    spacing = np.ones(n) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if n == 3:
        from volumetric.kernels.registration3d import describe3d

        return describe3d(matrix, spacing)
    a = matrix[:2, :2]
    turn = to_physical(a, spacing)
    return {
        "offset_row": float(matrix[0, 2]), "offset_col": float(matrix[1, 2]),
        "rotation_deg": float(np.degrees(np.arctan2(turn[1, 0] - turn[0, 1],
                                                    turn[0, 0] + turn[1, 1]))),
        "a_rr": float(a[0, 0]), "a_rc": float(a[0, 1]),
        "a_cr": float(a[1, 0]), "a_cc": float(a[1, 1]),
    }
