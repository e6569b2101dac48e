"""Affine and thin-plate-spline transformations of 2D images, as sampling grids and on points.

Conventions shared by every function here:

* Coordinates are normalised, ``(x, y)`` in ``[-1, 1]``: ``x`` runs along the image
  width (last axis), ``y`` along its height, as in :func:`torch.nn.functional.grid_sample`.
* A transformation maps a position of the *output* (target) image to the position of the
  *input* (source) image that is sampled there, so ``warp(source, grid)`` brings the
  source onto the target.
* Affine ``theta`` has shape ``(B, 6)``: the rows of the 2x3 matrix
  ``[[a, b, tx], [c, d, ty]]``, with ``(x, y) -> (a x + b y + tx, c x + d y + ty)``;
  the identity is ``[1, 0, 0, 0, 1, 0]``.
* Thin-plate-spline ``theta`` has shape ``(B, 18)``: the x displacements of the 3x3 control
  points, then their y displacements. Control point ``k = 3 * row + column`` sits at
  ``(x, y) = (-1 + column, -1 + row)``; it is moved to itself plus its displacement and the
  spline interpolates in between, so all zeros is the identity.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.nn import functional as F

KINDS = ("affine", "tps")
PARAMETERS = {"affine": 6, "tps": 18}
IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def check_kind(kind: str) -> None:
    """Raise ``ValueError`` unless ``kind`` is ``"affine"`` or ``"tps"``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def identity_theta(kind: str, batch: int = 1) -> torch.Tensor:
    """The parameters of the identity transformation, shape ``(batch, 6 or 18)``."""
    check_kind(kind)
    if kind == "affine":
        return torch.tensor(IDENTITY_AFFINE).repeat(batch, 1)
    return torch.zeros(batch, PARAMETERS["tps"])


def control_points() -> torch.Tensor:
    """The 3x3 thin-plate-spline control points, shape ``(9, 2)`` as ``(x, y)``, row-major."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 3), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def _radial(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """The TPS kernel ``U(r) = r^2 log r^2`` of ``points (..., N, 2)`` and ``centres (K, 2)``."""
    r2 = (points[..., :, None, :] - centres).square().sum(dim=-1)
    return r2 * torch.log(r2.clamp_min(1e-12))


def _affine_part(points: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)


@lru_cache(maxsize=1)
def _tps_system_inverse() -> torch.Tensor:
    """Inverse of the 12x12 TPS system ``[[K, P], [P^T, 0]]`` for the fixed control points."""
    centres = control_points().double()
    kernel = _radial(centres, centres)
    poly = _affine_part(centres)
    system = torch.zeros(12, 12, dtype=torch.float64)
    system[:9, :9] = kernel
    system[:9, 9:] = poly
    system[9:, :9] = poly.T
    return torch.linalg.inv(system)


def affine_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Move ``points`` by each affine ``theta (B, 6)``; returns ``(B, N, 2)``.

    ``points`` is ``(N, 2)`` (the same for every transformation) or ``(B, N, 2)``.
    """
    matrix = theta.reshape(-1, 2, 3)
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def tps_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Move ``points`` by each thin-plate spline ``theta (B, 18)``; returns ``(B, N, 2)``.

    ``points`` is ``(N, 2)`` (the same for every transformation) or ``(B, N, 2)``.

    The spline's weights are ``L^-1 [d; 0]`` with ``L`` the system of the fixed control
    points (solved once) and ``d`` the control point displacements.
    """
    displacements = theta.reshape(-1, 2, 9).transpose(1, 2)
    weights = _tps_system_inverse().to(theta)[:, :9] @ displacements
    centres = control_points().to(theta)
    basis = torch.cat([_radial(points, centres), _affine_part(points)], dim=-1)
    return points + basis @ weights


def transform_points(theta: torch.Tensor, points: torch.Tensor, kind: str) -> torch.Tensor:
    """Move ``points (N, 2)`` or ``(B, N, 2)`` by ``theta`` of ``kind``; returns ``(B, N, 2)``."""
    check_kind(kind)
    return affine_points(theta, points) if kind == "affine" else tps_points(theta, points)


def _identity_grid(theta: torch.Tensor, size: tuple[int, int],
                   align_corners: bool) -> torch.Tensor:
    eye = torch.tensor([IDENTITY_AFFINE], dtype=theta.dtype, device=theta.device)
    return F.affine_grid(eye.reshape(1, 2, 3), [1, 1, *size], align_corners=align_corners)


def affine_grid(theta: torch.Tensor, size: tuple[int, int], *,
                align_corners: bool = False) -> torch.Tensor:
    """Sampling grid of affine ``theta (B, 6)`` for an output of ``size = (H, W)``.

    Same semantics as :func:`torch.nn.functional.affine_grid`; returns ``(B, H, W, 2)``
    holding ``(x, y)``.
    """
    return F.affine_grid(theta.reshape(-1, 2, 3), [theta.shape[0], 1, *size],
                         align_corners=align_corners)


def tps_grid(theta: torch.Tensor, size: tuple[int, int], *,
             align_corners: bool = False) -> torch.Tensor:
    """Sampling grid of thin-plate spline ``theta (B, 18)`` for an output of ``size = (H, W)``.

    Output pixel positions follow :func:`torch.nn.functional.affine_grid` with the same
    ``align_corners``; returns ``(B, H, W, 2)`` holding ``(x, y)``.
    """
    base = _identity_grid(theta, size, align_corners).reshape(-1, 2)
    return tps_points(theta, base).reshape(theta.shape[0], *size, 2)


def transform_grid(theta: torch.Tensor, size: tuple[int, int], kind: str, *,
                   align_corners: bool = False) -> torch.Tensor:
    """:func:`affine_grid` or :func:`tps_grid` by ``kind``."""
    check_kind(kind)
    grid = affine_grid if kind == "affine" else tps_grid
    return grid(theta, size, align_corners=align_corners)


def warp(image: torch.Tensor, grid: torch.Tensor, *, align_corners: bool = False) -> torch.Tensor:
    """Sample ``image (B, C, H, W)`` at ``grid (B, h, w, 2)``: bilinear, zeros outside."""
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=align_corners)
