"""Training pairs of the geometric matcher: a frame and a randomly warped copy of it.

The warps are the worm lab's augmentations (after imgaug), 2 to 4 of them
per pair, chosen at random and applied in this order:

==========  ====================================================================
``shear``   shear along x, then along y, each by an angle in (-10, 10) degrees
``rotate``  rotation by -30, -15, 15 or 30 degrees
``distort`` piecewise distortion: the points of a 4x4 control grid moved by
            normal offsets of a scale in (0.01, 0.06) of the image size,
            interpolated bilinearly in between
``zoom``    zoom by 1.1 to 1.2 per axis, with a translation of up to 10 % of
            the image size
``noise``   additive Gaussian noise of a standard deviation in (0, 1/40) of
            the intensity range (no motion)
==========  ====================================================================

A warp is a map of positions of the warped image (the target) to positions
of the frame (the source), in the normalised ``(x, y)`` coordinates of
:mod:`volumetric.models.warps`, so ``warped = warp(frame, grid)`` with
``grid`` the map of every pixel's position, and the true answer of the
matcher is known at any point: :func:`volumetric.models.matching.grid_distance`
compares its prediction with the map of the loss grid. Rotations and shears
act on positions in proportion to the image's sides (a rotation stays one on
a non-square frame). Landmarks are the brightest local maxima of the warped
image's first channel (before noise); their true positions in the frame are
the map of their positions.

Pairs are generated when read, from frames read lazily (maximum projections
along ``z``) and kept at the matcher's input size; pair ``i`` of epoch ``e``
depends only on the seed, ``e`` and ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from volumetric.io.frames import projections
from volumetric.models.matching import GRID_POINTS, grid, grid_distance, kind_of, matcher_input
from volumetric.models.warps import transform_points, warp

AUGMENTATIONS = ("shear", "rotate", "distort", "zoom", "noise")
SHEAR_DEG = 10.0
ROTATIONS_DEG = (-30.0, -15.0, 15.0, 30.0)
DISTORT_SCALE = (0.01, 0.06)
DISTORT_GRID = 4
ZOOM = (1.1, 1.2)
ZOOM_SHIFT = 0.2  # in normalised units: 10 % of the image size
NOISE_MAX = 1 / 40
LANDMARKS = 24


@dataclass(frozen=True)
class RandomWarp:
    """A composed random warp: its target-to-source map and its noise.

    Attributes
    ----------
    steps : tuple
        ``(name, parameters)`` of each chosen augmentation, in the order applied.
    aspect : tuple of float
        ``(width, height) / max(width, height)`` of the image.
    """

    steps: tuple[tuple[str, tuple[float, ...]], ...]
    aspect: tuple[float, float]

    @property
    def noise(self) -> float:
        """Standard deviation of the additive noise (0 without ``noise``)."""
        return next((p[0] for name, p in self.steps if name == "noise"), 0.0)

    def points(self, xy: torch.Tensor) -> torch.Tensor:
        """Map target positions ``xy (..., 2)`` to source positions (normalised ``(x, y)``).

        The image was shear, rotated, ... in that order, so a target position
        undoes the last one first.
        """
        aspect = torch.tensor(self.aspect, dtype=xy.dtype)
        q = xy * aspect
        for name, parameters in reversed(self.steps):
            q = _MAPS[name](q, parameters)
        return q / aspect


def _linear(q: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    return q @ torch.as_tensor(matrix, dtype=q.dtype).T


def _shear(q: torch.Tensor, p: tuple[float, ...]) -> torch.Tensor:
    a, b = np.tan(np.deg2rad(p))
    forward = np.array([[1.0, 0.0], [b, 1.0]]) @ np.array([[1.0, a], [0.0, 1.0]])
    return _linear(q, np.linalg.inv(forward))


def _rotate(q: torch.Tensor, p: tuple[float, ...]) -> torch.Tensor:
    angle = -np.deg2rad(p[0])
    c, s = np.cos(angle), np.sin(angle)
    return _linear(q, np.array([[c, -s], [s, c]]))


def _distort(q: torch.Tensor, p: tuple[float, ...]) -> torch.Tensor:
    offsets = torch.tensor(p, dtype=q.dtype).reshape(1, 2, DISTORT_GRID, DISTORT_GRID)
    at = q.reshape(1, 1, -1, 2).clamp(-1, 1)
    moved = F.grid_sample(offsets, at, mode="bilinear", align_corners=True)
    return q + moved.reshape(2, -1).T.reshape(q.shape)


def _zoom(q: torch.Tensor, p: tuple[float, ...]) -> torch.Tensor:
    zoom, shift = torch.tensor(p[:2], dtype=q.dtype), torch.tensor(p[2:], dtype=q.dtype)
    return q / zoom + shift


_MAPS = {"shear": _shear, "rotate": _rotate, "distort": _distort, "zoom": _zoom,
         "noise": lambda q, p: q}


def random_warp(rng: np.random.Generator, aspect: tuple[float, float] = (1.0, 1.0),
                augmentations: Sequence[str] = AUGMENTATIONS) -> RandomWarp:
    """2 to 4 of ``augmentations`` (all of them when fewer), chosen and parametrised with ``rng``.

    Examples
    --------
    >>> w = random_warp(np.random.default_rng(0))
    >>> 2 <= len(w.steps) <= 4 and w.points(torch.zeros(1, 2)).shape == (1, 2)
    True
    """
    allowed = [name for name in AUGMENTATIONS if name in augmentations]
    count = int(rng.integers(min(2, len(allowed)), min(4, len(allowed)) + 1))
    chosen = sorted(rng.choice(len(allowed), size=count, replace=False))
    steps = []
    for index in chosen:
        name = allowed[index]
        if name == "shear":
            parameters = tuple(rng.uniform(-SHEAR_DEG, SHEAR_DEG, 2))
        elif name == "rotate":
            parameters = (float(rng.choice(ROTATIONS_DEG)),)
        elif name == "distort":
            scale = rng.uniform(*DISTORT_SCALE)
            parameters = tuple(rng.normal(0.0, 2 * scale, 2 * DISTORT_GRID**2))
        elif name == "zoom":
            zoom = rng.uniform(*ZOOM, 2)
            parameters = (*zoom, *rng.uniform(-ZOOM_SHIFT, ZOOM_SHIFT, 2) * np.asarray(aspect))
        else:
            parameters = (rng.uniform(0.0, NOISE_MAX),)
        steps.append((name, tuple(float(v) for v in parameters)))
    return RandomWarp(tuple(steps), (float(aspect[0]), float(aspect[1])))


def pixel_positions(size: tuple[int, int]) -> torch.Tensor:
    """Normalised ``(x, y)`` of the pixel centres of an image of ``size = (H, W)``, ``(H, W, 2)``.
    """
    height, width = size
    y = (2 * torch.arange(height, dtype=torch.float32) + 1) / height - 1
    x = (2 * torch.arange(width, dtype=torch.float32) + 1) / width - 1
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def landmarks(image: np.ndarray, count: int = LANDMARKS) -> np.ndarray:
    """Up to ``count`` bright, well separated local maxima of ``image``: ``(k, 2)``, normalised
    ``(x, y)``."""
    from skimage.feature import peak_local_max

    height, width = image.shape
    peaks = peak_local_max(image, min_distance=max(2, min(height, width) // 40),
                           threshold_rel=0.3, num_peaks=count, exclude_border=True)
    return np.stack([(2 * peaks[:, 1] + 1) / width - 1,
                     (2 * peaks[:, 0] + 1) / height - 1], axis=1).astype(np.float32)


class WarpPairs:
    """Pairs (frame, randomly warped frame) of a time series, made when read.

    Parameters
    ----------
    source : volumetric.io.sources.Source
        A time series with ``t``, ``y`` and ``x`` axes (``c`` and ``z`` optional).
    times : sequence of int
        The frames used; pair ``i`` warps frame ``times[i % len(times)]``.
    pairs : int
        Pairs per epoch.
    channels : sequence of int
        Channels the matcher sees.
    size : tuple of int
        ``(H, W)`` of the matcher's input.
    seed : int
    fixed : bool
        The same pairs every epoch (validation).
    augmentations : sequence of str
        The :data:`AUGMENTATIONS` drawn from (default: all).
    with_landmarks : bool
        Also return landmarks: ``landmarks`` (target positions), ``landmarks_true``
        (their source positions) and ``landmarks_mask``, padded to :data:`LANDMARKS`.

    Items are dicts: ``image`` ``(2 C, H, W)`` (the frame's channels, then the warped
    copy's) and ``target`` ``(GRID_POINTS**2, 2)``, the true source positions of the
    loss grid (:func:`volumetric.models.matching.grid`).
    """

    def __init__(self, source, times: Sequence[int], *, pairs: int, channels: Sequence[int],
                 size: tuple[int, int], seed: int = 0, fixed: bool = False,
                 augmentations: Sequence[str] = AUGMENTATIONS, with_landmarks: bool = False):
        self.source, self.times, self.pairs = source, tuple(times), int(pairs)
        self.channels, self.size = tuple(channels), tuple(size)
        self.seed, self.fixed, self.with_landmarks = seed, fixed, with_landmarks
        self.augmentations = tuple(augmentations)
        self.epoch = 0
        height, width = source.shape[-2:]
        self.aspect = (width / max(height, width), height / max(height, width))
        self._frames: dict[int, torch.Tensor] = {}
        self._positions = pixel_positions(self.size)
        self._grid = grid(GRID_POINTS)

    def __len__(self) -> int:
        return self.pairs

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's pairs (ignored with ``fixed``)."""
        self.epoch = epoch

    def frame(self, t: int) -> torch.Tensor:
        """Frame ``t`` as the matcher sees it, ``(C, H, W)`` (read once, then kept)."""
        if t not in self._frames:
            projection = projections(self.source, t)
            self._frames[t] = matcher_input(projection[list(self.channels)], self.size)
        return self._frames[t]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch + 1, index])
        image = self.frame(self.times[index % len(self.times)])
        moved = random_warp(rng, self.aspect, self.augmentations)
        warped = warp(image[None], moved.points(self._positions)[None])[0]
        item = {"target": moved.points(self._grid)}
        if self.with_landmarks:
            found = torch.from_numpy(landmarks(warped[0].numpy()))
            padded = torch.zeros(LANDMARKS, 2)
            padded[:len(found)] = found
            mask = torch.zeros(LANDMARKS)
            mask[:len(found)] = 1.0
            item.update(landmarks=padded, landmarks_true=moved.points(padded),
                        landmarks_mask=mask)
        if moved.noise > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            warped = warped + moved.noise * torch.randn(warped.shape, generator=generator)
        item["image"] = torch.cat([image, warped])
        return item


class LandmarkMeter:
    """Validation of a matcher on :class:`WarpPairs` with landmarks (a :class:`Meter`).

    ``val_loss`` is the grid loss; the landmark errors are distances in pixels of the
    frames (of ``frame_size = (H, W)``) between where the predicted and the true
    transformation take each landmark: mean, 90th percentile, and PCK@0.05, the share
    within 5 % of the frame's larger side.
    """

    def __init__(self, frame_size: tuple[int, int]):
        height, width = frame_size
        self.scale = torch.tensor([width / 2, height / 2])
        self.tolerance = 0.05 * max(height, width)
        self.total, self.samples = 0.0, 0
        self.errors: list[torch.Tensor] = []

    def add(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Count one batch of predicted parameters ``output``."""
        self.total += float(grid_distance(output, batch["target"])) * output.shape[0]
        self.samples += output.shape[0]
        moved = transform_points(output, batch["landmarks"], kind_of(output))
        scale = self.scale.to(output.device)
        distance = ((moved - batch["landmarks_true"]) * scale).norm(dim=-1)
        self.errors.append(distance[batch["landmarks_mask"] > 0].cpu())

    def result(self) -> dict[str, float]:
        """The row: ``val_loss``, ``val_landmark_px``, ``val_landmark_p90_px``, ``val_pck``."""
        errors = torch.cat(self.errors) if self.errors else torch.zeros(0)
        row = {"val_loss": self.total / max(self.samples, 1)}
        if len(errors):
            row.update(val_landmark_px=float(errors.mean()),
                       val_landmark_p90_px=float(torch.quantile(errors, 0.9)),
                       val_pck=float((errors <= self.tolerance).float().mean()))
        return row
