"""Learned frame alignment (``vol align --method learned``): trained geometric matchers.

``--matcher RUN_DIR`` names one run of ``vol train-matcher`` (affine or
TPS); ``--matcher AFFINE_RUN,TPS_RUN`` the two stages of Rocco et al.: the
affine matcher aligns the moving frame coarsely, the TPS matcher then
matches the affine-warped frame to the reference. Each matcher sees the
channels and input size it was trained on, from the frames' maximum
projections along ``z``.

A frame's alignment samples, at each reference position ``p``, the moving
frame at ``A(T(p))`` (``T`` the spline, ``A`` the affine map; either may be
absent), applied to every channel and ``z`` plane. ``transforms.json`` holds
``matrix``, the affine part as the 3x3 pixel matrix of the classical method,
and ``tps``, the spline's 18 parameters (control point displacements in
normalised coordinates, :mod:`volumetric.models.warps`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.frames import check_frames, frame_channels, projections
from volumetric.io.sources import Source
from volumetric.io.writes import write_box
from volumetric.kernels.casting import to_dtype
from volumetric.kernels.registration import ncc
from volumetric.models.matching import ARCHITECTURE
from volumetric.ops.align import save_record
from volumetric.ops.paths import absolute


@dataclass(frozen=True)
class Matcher:
    """A trained matcher: its checkpoint, kind, channels and input size."""

    path: str
    kind: str
    channels: tuple[int, ...]
    size: tuple[int, int]


def _matcher(text: str, source: Source, src: str) -> Matcher:
    from volumetric.models.checkpoint import read_checkpoint

    path = Path(absolute(text))
    if path.is_dir():
        path = path / "model.pt"
    payload = read_checkpoint(path)
    if payload["architecture"] != ARCHITECTURE:
        raise InputError(f"--matcher {text}: {path} holds a {payload['architecture']} network, "
                         "not a matcher; train one with `vol train-matcher`")
    config = payload["model_config"]
    size = tuple(config["input_shape"][1:])
    channels = tuple(payload["preprocess"].get("channels", ()))
    frame_channels(source, channels, f"--matcher {text}")
    check_frames(source, src, size)
    return Matcher(str(path), config["kind"], channels, size)


def load_matchers(spec: str, source: Source, src: str) -> tuple[Matcher, ...]:
    """The matchers of ``--matcher RUN_DIR[,RUN_DIR]``, checked against the frames ``source``.

    Raises
    ------
    InputError
        More than two runs, a checkpoint that is not a matcher's, two matchers that
        are not affine then TPS, channels the frames lack, or frames smaller than a
        matcher's input.
    """
    parts = [p for p in spec.split(",") if p]
    if not 1 <= len(parts) <= 2:
        raise InputError(f"--matcher {spec}: give RUN_DIR or AFFINE_RUN_DIR,TPS_RUN_DIR")
    matchers = tuple(_matcher(p, source, src) for p in parts)
    kinds = tuple(m.kind for m in matchers)
    if len(matchers) == 2 and kinds != ("affine", "tps"):
        raise InputError(f"--matcher {spec}: two matchers are applied affine then TPS, "
                         f"but these are {' then '.join(kinds)}")
    return matchers


@lru_cache(maxsize=4)
def _network(path: str, stamp: float) -> Any:
    from volumetric.models.checkpoint import model_from_checkpoint, read_checkpoint

    return model_from_checkpoint(read_checkpoint(path), path).eval()


def match(matchers: tuple[Matcher, ...], moving: np.ndarray,
          fixed: np.ndarray) -> dict[str, list[float]]:
    """The transformation of ``moving`` onto ``fixed`` (``(C, Y, X)`` projections).

    Returns
    -------
    dict
        ``affine`` (6 parameters) and / or ``tps`` (18), normalised coordinates.
    """
    import torch

    from volumetric.engine import worker_threads
    from volumetric.models.matching import matcher_input
    from volumetric.models.warps import affine_grid, warp

    torch.set_num_threads(worker_threads())
    thetas: dict[str, list[float]] = {}
    with torch.no_grad():
        for m in matchers:
            net = _network(m.path, os.stat(m.path).st_mtime)
            source = matcher_input(moving[list(m.channels)], m.size)[None]
            target = matcher_input(fixed[list(m.channels)], m.size)[None]
            if "affine" in thetas:
                theta = torch.tensor([thetas["affine"]])
                source = warp(source, affine_grid(theta, m.size))
            thetas[m.kind] = net(source, target)[0].tolist()
    return thetas


def _to_normalised(shape: tuple[int, int]) -> np.ndarray:
    """The matrix taking ``(row, col, 1)`` pixel positions to normalised ``(x, y, 1)``."""
    height, width = shape
    return np.array([[0.0, 2 / width, 1 / width - 1],
                     [2 / height, 0.0, 1 / height - 1],
                     [0.0, 0.0, 1.0]])


def pixel_matrix(theta: list[float], shape: tuple[int, int]) -> np.ndarray:
    """The 3x3 matrix over ``(row, col, 1)`` pixel positions of an affine ``theta`` (6)."""
    to_norm = _to_normalised(shape)
    normalised = np.vstack([np.reshape(theta, (2, 3)), [0.0, 0.0, 1.0]])
    return np.linalg.inv(to_norm) @ normalised @ to_norm


def affine_theta(matrix: np.ndarray, shape: tuple[int, int]) -> list[float]:
    """The affine ``theta`` (6) of a 3x3 pixel matrix: the inverse of :func:`pixel_matrix`."""
    to_norm = _to_normalised(shape)
    return (to_norm @ np.asarray(matrix) @ np.linalg.inv(to_norm))[:2].ravel().tolist()


def map_positions(positions: np.ndarray, matrix: np.ndarray, tps: list[float] | None,
                  shape: tuple[int, int]) -> np.ndarray:
    """Where a frame's alignment takes reference pixel ``positions (N, 2)`` (row, col).

    The positions in the moving frame, ``A(T(p))``, of frames of ``shape`` (see
    :func:`warp_planes`); with ``tps`` None, simply ``matrix`` applied to them.
    """
    import torch

    from volumetric.models.warps import tps_points

    to_norm = _to_normalised(shape)
    homogeneous = np.column_stack([positions, np.ones(len(positions))])
    xy = (homogeneous @ to_norm.T)[:, :2]
    if tps is not None:
        xy = tps_points(torch.tensor([tps], dtype=torch.float64),
                        torch.from_numpy(xy))[0].numpy()
    moved = np.column_stack([xy, np.ones(len(xy))]) @ np.linalg.inv(to_norm).T
    return (moved @ np.asarray(matrix).T)[:, :2]


def warp_planes(planes: np.ndarray, matrix: np.ndarray,
                tps: list[float] | None = None) -> np.ndarray:
    """Every plane of ``planes (N, Y, X)`` sampled at ``A(T(p))``; same dtype, zeros outside.

    ``A`` is the pixel ``matrix`` (3x3), ``T`` the spline of ``tps`` (identity when None).
    """
    import torch

    from volumetric.models.warps import affine_points, tps_grid, warp

    size = planes.shape[-2:]
    spline = torch.tensor([tps or [0.0] * 18], dtype=torch.float64)
    affine = torch.tensor([affine_theta(matrix, size)], dtype=torch.float64)
    grid = affine_points(affine, tps_grid(spline, size).reshape(1, -1, 2)).reshape(1, *size, 2)
    out = warp(torch.from_numpy(planes.astype(np.float64))[None], grid)[0].numpy()
    return to_dtype(out, planes.dtype)


@dataclass(frozen=True)
class MatchFrame:
    """Block task: match frame ``t`` (the box's) to its fixed frame; the record to a file."""

    source: Source
    matchers: tuple[Matcher, ...]
    channel: int
    reference: int | None  # None: the previous frame
    folder: str

    def __call__(self, box: Box) -> float:
        t = box.start[0]
        fixed_t = t - 1 if self.reference is None else self.reference
        moving = projections(self.source, t)
        if fixed_t < 0 or fixed_t == t:
            fixed, thetas = moving, {}
        else:
            fixed = projections(self.source, fixed_t)
            thetas = match(self.matchers, moving, fixed)
        matrix = pixel_matrix(thetas.get("affine", [1, 0, 0, 0, 1, 0]), moving.shape[-2:])
        aligned = warp_planes(moving[self.channel:self.channel + 1], matrix, thetas.get("tps"))[0]
        record = {"t": t, "fixed": max(fixed_t, 0), "pair_matrix": matrix.tolist(),
                  "score": ncc(fixed[self.channel], aligned),
                  "score_before": ncc(fixed[self.channel], moving[self.channel]),
                  **({"tps": thetas["tps"]} if "tps" in thetas else {})}
        save_record(self.folder, record)
        return record["score"]


@dataclass(frozen=True)
class GridWarpFrame:
    """Block task: warp every channel and plane of frame ``t`` by its matrix and spline."""

    source: Source
    dst: str
    matrices: tuple[tuple[float, ...], ...]  # per frame, the 3x3 pixel matrix flattened
    splines: tuple[tuple[float, ...] | None, ...]  # per frame, the 18 TPS parameters or None

    def __call__(self, box: Box) -> int:
        t = box.start[0]
        data = self.source.read(box)
        matrix = np.reshape(self.matrices[t], (3, 3))
        spline = list(self.splines[t]) if self.splines[t] is not None else None
        out = warp_planes(data.reshape(-1, *data.shape[-2:]), matrix, spline)
        write_box(self.dst, box.slices, out.reshape(data.shape))
        return int(out.size)
