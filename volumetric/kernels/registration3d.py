"""Classical 3D registration of ``(Z, Y, X)`` volumes (:func:`registration.register` in 3D).

The convention is the 2D one, a dimension up: a 4x4 homogeneous matrix ``M``
in voxel index coordinates ``(z, y, x, 1)`` maps a position of the reference
volume to the same structure's position in the moving one
(``aligned[p] = moving[M @ p]``), about the volume centre ``c``:
``q = A (p - c) + c + t``, with ``t`` in voxels.

Voxels are usually anisotropic (a z step of several pixels), so rotations
are parametrised in physical units: ``A = S^-1 R S`` with ``S`` the diagonal
of the voxel size and ``R`` a 3D rotation, a motion that is rigid in
micrometres while the matrix stays in voxels. ``affine`` leaves all of ``A``
free (12 parameters with ``t``).

The start is the 2D one on volumes: a grid of rotations about ``z`` (the
dominant, in-plane motion of a crawling animal), each followed by a 3D
``skimage.registration.phase_cross_correlation``, on a copy downscaled to at
most ``COARSE_SIZE`` voxels per axis; the best NCC wins. Tilts out of the
plane are left to the refinement: Powell on the NCC of lightly smoothed
volumes (``scipy.optimize.minimize``), warping with
``scipy.ndimage.affine_transform``, from that coarse copy to finer ones
(:func:`pyramid`: the factors halved down to full resolution while a copy has
at most ``FINE_VOXELS`` voxels), each level starting from the previous one's
result. ``affine`` starts with a ``rigid`` refinement on the coarse copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from volumetric.kernels.registration import (ANGLES_DEG, SMOOTH_SIGMA, matrix_from, ncc,
                                             to_physical, to_voxels, warp)

COARSE_SIZE = 64
FINE_VOXELS = 2**19
XTOL = 1e-2  # voxels
AXES = "zyx"


def rotation3d(rotvec: np.ndarray) -> np.ndarray:
    """The 3x3 rotation of the rotation vector ``rotvec`` (radians) in ``(z, y, x)`` coordinates.

    ``(a, 0, 0)`` turns the ``(y, x)`` plane by ``a`` as the 2D
    :func:`registration.rotation` does.
    """
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rotvec).as_matrix()


def nearest_rotation(linear: np.ndarray) -> np.ndarray:
    """The rotation closest to ``linear`` (the orthogonal factor of its polar decomposition)."""
    u, _, vt = np.linalg.svd(linear)
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] = -u[:, -1]
    return u @ vt


@dataclass(frozen=True)
class _Model:
    """Maps the optimiser's parameters (all in voxels) to ``(linear, shift)`` and back."""

    name: str
    shape: tuple[int, ...]
    spacing: np.ndarray

    @property
    def radius(self) -> float:
        return max(self.shape) / 2

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "translation":
            return np.eye(3), x[:3]
        if self.name == "rigid":
            return to_voxels(rotation3d(x[:3] / self.radius), self.spacing), x[3:6]
        extent = np.asarray(self.shape) / 2  # a column's entries: voxels at the volume's edge
        return np.eye(3) + x[:9].reshape(3, 3) / extent[None, :], x[9:12]

    def pack(self, linear: np.ndarray, shift: np.ndarray) -> np.ndarray:
        from scipy.spatial.transform import Rotation

        if self.name == "translation":
            return np.asarray(shift, dtype=np.float64)
        if self.name == "rigid":
            turn = nearest_rotation(to_physical(linear, self.spacing))
            return np.array([*Rotation.from_matrix(turn).as_rotvec() * self.radius, *shift])
        extent = np.asarray(self.shape) / 2
        return np.array([*((linear - np.eye(3)) * extent[None, :]).ravel(), *shift])


@dataclass(frozen=True)
class _Level:
    """Both volumes downscaled by some factors; ``to_full`` maps level voxels to full ones.

    ``unit`` is the fixed volume, mean subtracted and of norm 1, for a quick NCC.
    """

    fixed: np.ndarray
    moving: np.ndarray
    to_full: np.ndarray
    unit: np.ndarray

    @classmethod
    def of(cls, fixed: np.ndarray, moving: np.ndarray, factors: tuple[int, ...]) -> _Level:
        from skimage.transform import downscale_local_mean

        f = np.asarray(factors)
        to_full = np.eye(4)
        if (f > 1).any():
            crop = tuple(slice(0, s - s % k) for s, k in zip(fixed.shape, factors))
            fixed = downscale_local_mean(fixed[crop], factors)
            moving = downscale_local_mean(moving[crop], factors)
            to_full[:3, :3] = np.diag(f)
            to_full[:3, 3] = (f - 1) / 2
        unit = (fixed - fixed.mean()).ravel()
        norm = np.linalg.norm(unit)
        return cls(fixed, moving, to_full, unit / norm if norm > 0 else unit)

    def warped(self, matrix: np.ndarray) -> np.ndarray:
        """The moving volume warped by the full-resolution ``matrix``, at this level."""
        return warp(self.moving, np.linalg.solve(self.to_full, matrix @ self.to_full),
                    mode="nearest")

    def score(self, matrix: np.ndarray) -> float:
        """NCC of the fixed volume and the moving one warped by ``matrix`` (as :func:`ncc`).

        Element-wise sums, no BLAS (whose threads crowd a busy worker).
        """
        b = self.warped(matrix).ravel()
        b -= b.mean()
        spread = np.sqrt((b * b).sum())
        return float((self.unit * b).sum() / spread) if spread > 0 else 0.0


def pyramid(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Downscaling factors per refinement level, coarsest first.

    The first level has at most ``COARSE_SIZE`` voxels per axis; the factors
    are then halved down to 1 (full resolution) while a level has at most
    ``FINE_VOXELS`` voxels: finer levels cost much and gain little
    (``benchmarks/align.py``).
    """
    factors = [max(1, int(np.ceil(s / COARSE_SIZE))) for s in shape]
    levels = [tuple(factors)]
    while max(factors) > 1:
        factors = [max(1, int(np.ceil(f / 2))) for f in factors]
        if np.prod([s // f for s, f in zip(shape, factors)]) > FINE_VOXELS:
            break
        levels.append(tuple(factors))
    return levels


def _coarse_start(level: _Level, model: str, spacing: np.ndarray,
                  centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(linear, shift)`` at full resolution: rotations about z, each with a phase correlation."""
    from skimage.registration import phase_cross_correlation

    factors = np.diag(level.to_full)[:3]
    angles = [0.0] if model == "translation" else np.deg2rad(ANGLES_DEG)
    best = (-np.inf, np.eye(3), np.zeros(3))
    for angle in angles:
        linear = to_voxels(rotation3d(np.array([angle, 0.0, 0.0])), spacing)
        turned = level.warped(matrix_from(linear, np.zeros(3), centre))
        shift, _, _ = phase_cross_correlation(level.fixed, turned, normalization=None)
        t = -linear @ (shift * factors)
        score = level.score(matrix_from(linear, t, centre))
        if score > best[0]:
            best = (score, linear, t)
    return best[1], best[2]


def register3d(fixed: np.ndarray, moving: np.ndarray, model: str,
               spacing: np.ndarray) -> tuple[np.ndarray, float]:
    """Register the volume ``moving`` to ``fixed``; see :func:`registration.register`."""
    from scipy.ndimage import gaussian_filter
    from scipy.optimize import minimize

    fixed = fixed.astype(np.float64)
    moving = moving.astype(np.float64)
    centre = (np.asarray(fixed.shape) - 1) / 2
    sigma = SMOOTH_SIGMA * spacing.min() / spacing
    smooth_f = gaussian_filter(fixed, sigma)
    smooth_m = gaussian_filter(moving, sigma)
    levels = [_Level.of(smooth_f, smooth_m, f) for f in pyramid(fixed.shape)]
    linear, shift = _coarse_start(levels[0], model, spacing, centre)
    for i, level in enumerate(levels):
        for stage in ["rigid", "affine"] if model == "affine" and i == 0 else [model]:
            params = _Model(stage, fixed.shape, spacing)

            def cost(x: np.ndarray, params: _Model = params, level: _Level = level) -> float:
                return -level.score(matrix_from(*params.unpack(x), centre))

            result = minimize(cost, params.pack(linear, shift), method="Powell",
                              options={"xtol": XTOL, "ftol": 1e-7})
            linear, shift = params.unpack(result.x)
    matrix = matrix_from(linear, shift, centre)
    return matrix, ncc(fixed, warp(moving, matrix, mode="nearest"))


def describe3d(matrix: np.ndarray, spacing: np.ndarray) -> dict[str, float]:
    """Readable parameters of a 4x4 matrix; see :func:`registration.describe`."""
    from scipy.spatial.transform import Rotation

    a = matrix[:3, :3]
    turn = nearest_rotation(to_physical(a, spacing))
    angles = np.degrees(Rotation.from_matrix(turn).as_euler("XYZ"))
    return {
        **{f"offset_{axis}": float(matrix[i, 3]) for i, axis in enumerate(AXES)},
        **{f"rotation_{axis}_deg": float(angle) for axis, angle in zip(AXES, angles)},
        **{f"a_{r}{c}": float(a[i, j]) for i, r in enumerate(AXES) for j, c in enumerate(AXES)},
    }
