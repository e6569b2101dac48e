"""A lazy patch dataset over OME-Zarr (raw, target[, mask]) volumes for torch training.

Nothing but metadata, the sampler's index and the intensity statistics is
prepared in the constructing process. Each process (the main one, or every
DataLoader worker, forked or spawned) opens the Zarr arrays itself on first
use and reads only the patch, or the patch plus the margin its warp needs.
Zarr's event loop and thread pool are reset in forked children by zarr
itself (``os.register_at_fork``), numcodecs' Blosc turns its threads off in
a process other than the one that imported it, and no open store is ever
pickled, so workers are safe under fork and spawn even after the parent has
read the arrays.

Each volume is sampled over ``(t, [z,] y, x)``: every selected time point
and, with 2D patches, every plane. With ``split``, the train and validation
regions are disjoint (a slab, whole planes, whole time points or whole
volumes, see :mod:`volumetric.train.splits`); patches stay inside their
region and warped patches mirror at the region's faces, so no training read ever touches a validation voxel.

Every patch location and augmentation is drawn from generators seeded with
``(seed, epoch, index)`` only, so a sample is the same for any number of
workers. Call :meth:`PatchDataset.set_epoch` before creating each epoch's
DataLoader iterator (with ``persistent_workers=True`` the workers keep the
epoch they started with).

Usage::

    ds = PatchDataset([VolumePair("raw.zarr", "mask.zarr")], (64, 64, 64),
                      sampler="foreground", augment=AugmentConfig(), split="train")
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    for epoch in range(10):
        ds.set_epoch(epoch)
        for batch in loader:
            batch["image"]      # (4, C, 64, 64, 64) float32; also "target",
                                # "mask" (pairs with a mask), "location" (4, 4):
                                # pair, z, y, x; "t" (4,): time point
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volumetric.errors import InputError, check_choice
from volumetric.geometry import Box, Coord, as_coord
from volumetric.io.cubes import CubeList, read_cubes
from volumetric.io.intensity import intensity_stats
from volumetric.io.sources import ZARR_READ_ERRORS, damaged_chunk
from volumetric.kernels.augment import (
    AugmentConfig,
    AugmentParams,
    adjust_intensity,
    flip_rotate,
    sample_augmentation,
    source_box,
    source_coordinates,
    warp,
)
from volumetric.kernels.normalize import METHODS, normalize
from volumetric.train.samplers import (
    SAMPLERS,
    Domain,
    ForegroundSampler,
    GridSampler,
    RandomSampler,
    domains_of,
    foreground_of,
    parse_foreground,
)
from volumetric.train.splits import choose_split, split_regions
from volumetric.train.volumes import (
    PairImage,
    VolumePair,
    check_consistent,
    open_pair,
    time_points,
)


@dataclass(frozen=True)
class PatchPlan:
    """What sample ``index`` of an epoch is: volume, spatial start, augmentation, time point."""

    pair: int
    start: Coord
    augment: AugmentParams | None
    t: int = 0


class PatchDataset(torch.utils.data.Dataset):
    """Patches of (raw, target[, mask]) OME-Zarr volumes, read lazily, with augmentation.

    Parameters
    ----------
    pairs : sequence of VolumePair
        The volumes; all raws need the same channel count, as do all targets,
        and either every pair has a mask or none.
    patch : (z, y, x)
        Patch shape. ``z == 1`` gives 2D patches ``(C, Y, X)`` drawn from
        every plane of 3D volumes; 2D images (``yx``, or ``zyx`` with one
        plane) take ``(1, y, x)`` or ``(y, x)``. Patches come from every
        time point the pairs select.
    sampler : {"random", "grid", "foreground"}
        Uniform random starts; non-overlapping tiles covering the region; or
        patches centred on foreground with ``foreground_probability``.
    foreground_probability : float
        Fraction of foreground-centred patches (foreground sampler).
    foreground : str
        Which target voxels are foreground, e.g. ``">0"`` (masks, labels) or
        ``"<5"`` (distance to a structure).
    augment : AugmentConfig, optional
        Augmentation; none when None.
    seed : int
        Seed of every location and augmentation draw.
    samples_per_epoch : int, optional
        Dataset length; by default the number of grid tiles covering the
        sampled region. The grid sampler walks through all its tiles across
        epochs (each once per lap, in a shuffled order), continuing where the
        previous epoch stopped.
    split : {"train", "val"}, optional
        Sample only the training or the validation region of each volume.
    val_split : {"auto", "fraction", "planes", "t", "volume"}
        How the regions are cut (see :mod:`volumetric.train.splits`):
        ``auto`` is ``planes`` for 2D patches of z-stacks, ``t`` for 2D
        patches of time series of 2D images, else ``fraction``.
    val_fraction : float
        Share of the split axis (or of the volumes) given to validation.
    cubes : path, CubeList or sequence of them, optional
        Cube list (from ``vol discover``) restricting sampling to patches
        centred in listed cubes (grid: tiles touching them); one for all
        pairs or one per pair.
    normalize : {"percentile", "zscore", "none"}
        Raw normalisation with volume-wide statistics measured once here.
    target : callable, optional
        Applied to every target patch ``(C, *spatial)`` as read, before
        augmentation (see :class:`volumetric.train.targets.TargetTransform`).

    Raises
    ------
    InputError
        Mismatched shapes or voxel sizes, a patch larger than a volume or
        region, an empty cube list, or no valid location.
    """

    def __init__(
        self,
        pairs: Sequence[VolumePair],
        patch: Sequence[int],
        *,
        sampler: str = "random",
        foreground_probability: float = 0.5,
        foreground: str = ">0",
        augment: AugmentConfig | None = None,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        split: str | None = None,
        val_split: str = "auto",
        val_fraction: float = 0.2,
        cubes: str | Path | CubeList | Sequence[str | Path | CubeList | None] | None = None,
        normalize: str = "percentile",
        target: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        check_choice(sampler, SAMPLERS, "sampler")
        check_choice(normalize, METHODS, "normalisation")
        if not pairs:
            raise InputError("no (raw, target) pair given")
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.method = normalize
        self.target = target
        self._arrays: dict[tuple[int, str], Any] = {}
        self._pid: int | None = None
        pairs = [p if isinstance(p, VolumePair) else VolumePair(*p) for p in pairs]
        self.images = [open_pair(p) for p in pairs]
        check_consistent(self.images)
        self.times = [time_points(p, imgs) for p, imgs in zip(pairs, self.images)]

        patch = as_coord(patch)
        if len(patch) not in (2, 3) or any(p < 1 for p in patch):
            raise InputError(f"patch {patch} needs 2 or 3 positive sizes (z, y, x)")
        patch3 = patch if len(patch) == 3 else (1, *patch)
        self.out_shape = patch3 if patch3[0] > 1 else patch3[1:]
        self.patches = [(1, *self._volume_patch(patch3, imgs["raw"])) for imgs in self.images]
        shapes = [(len(t), *imgs["raw"].spatial_shape) for t, imgs in zip(self.times, self.images)]

        cube_boxes = self._cube_boxes(cubes)
        self.val_split = choose_split(val_split, shapes, len(self.out_shape) == 2)
        self.regions = split_regions(shapes, self.patches, split, self.val_split, val_fraction,
                                     [imgs["raw"].name for imgs in self.images])
        used = [pair for pair, region in enumerate(self.regions) if region is not None]
        grid = GridSampler([(pair, self.regions[pair], self.patches[pair], cube_boxes[pair])
                            for pair in used], seed=self.seed)
        domains: list[Domain] = []
        for pair in used:
            domains += domains_of(pair, self.regions[pair], self.patches[pair], cube_boxes[pair])
        if not domains or not len(grid):
            where = f"the {split} region" if split else "the volume"
            raise InputError(f"no patch of shape {patch3} fits in {where}"
                             + (" centred in a listed cube" if cubes is not None else ""))

        self.foreground_rule = parse_foreground(foreground)
        if sampler == "grid":
            self.sampler: GridSampler | RandomSampler | ForegroundSampler = grid
        elif sampler == "random":
            self.sampler = RandomSampler(domains)
        else:
            self.sampler = ForegroundSampler(
                domains, foreground_probability,
                [(1, *imgs["target"].spatial_chunks) for imgs in self.images],
                self._read_foreground,
                what=f"target {foreground}",
            )
        self.length = int(samples_per_epoch) if samples_per_epoch is not None else len(grid)
        if self.length < 1:
            raise InputError(f"samples per epoch must be positive, got {samples_per_epoch}")
        self.stats = [self._stats(pair) if pair in used else None
                      for pair in range(len(self.images))]

    def _volume_patch(self, patch3: Coord, raw: PairImage) -> Coord:
        shape = raw.spatial_shape
        if len(shape) == 2:
            if patch3[0] != 1:
                raise InputError(f"patch {patch3} is 3D but raw {raw.name} is a 2D image {shape}")
            patch = patch3[1:]
        else:
            patch = patch3
        if any(p > s for p, s in zip(patch, shape)):
            raise InputError(f"patch {patch} is larger than raw {raw.name} of shape {shape}")
        return patch

    def _cube_boxes(self, cubes: Any) -> list[list[Box] | None]:
        n = len(self.images)
        if cubes is None:
            return [None] * n
        per_pair = list(cubes) if isinstance(cubes, (list, tuple)) else [cubes] * n
        if len(per_pair) != n:
            raise InputError(f"{len(per_pair)} cube lists given for {n} pairs")
        out: list[list[Box] | None] = []
        for entry, imgs, times in zip(per_pair, self.images, self.times):
            if entry is None:
                out.append(None)
                continue
            shape = tuple(imgs["raw"].spatial_shape)
            listing = entry if isinstance(entry, CubeList) else read_cubes(entry, shape=shape)
            name = "the cube list" if isinstance(entry, CubeList) else f"cube list {entry}"
            if listing.shape != shape:
                raise InputError(f"{name} was made for a volume of shape {listing.shape}, "
                                 f"not {shape}")
            if not listing.cubes:
                raise InputError(f"{name} is empty: no cube to sample patches from")
            out.append([Box((0, *b.start), (len(times), *b.stop)) for b in listing.boxes()])
        return out

    def _stats(self, pair: int) -> list[dict[str, float]]:
        raw = self.images[pair]["raw"]
        if self.method == "none":
            return [{}] * raw.channels
        array = self._array(pair, "raw")
        caxis = raw.axes.index("c") if "c" in raw.axes else None
        try:
            stats = intensity_stats(array, channel_axis=caxis)
        except ZARR_READ_ERRORS as exc:
            whole = (slice(None),) * len(raw.axes)
            raise InputError(f"{raw.array}: cannot read its intensities"
                             f"{damaged_chunk(array, raw.array, whole)} "
                             f"({type(exc).__name__}: {exc})") from None
        if caxis is None:
            return [stats]
        channels = [raw.channel] if raw.channel is not None else range(len(stats["low"]))
        return [{k: stats[k][c] for k in ("low", "high", "mean", "std")} for c in channels]

    # -- per-process reading -------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"], state["_pid"] = {}, None
        return state

    def _array(self, pair: int, role: str) -> Any:
        """The array of ``role`` in ``pair``, opened once per process."""
        import zarr

        if self._pid != os.getpid():
            self._arrays, self._pid = {}, os.getpid()
        key = (pair, role)
        if key not in self._arrays:
            self._arrays[key] = zarr.open_array(self.images[pair][role].array, mode="r")
        return self._arrays[key]

    def _read(self, pair: int, role: str, box: Box) -> np.ndarray:
        """``box`` (one time point, spatial) of one image as ``(C, *box.shape)``.

        Raises
        ------
        InputError
            A chunk that cannot be decoded; the message names its file.
        """
        image, array = self.images[pair][role], self._array(pair, role)
        spatial = Box(box.start[1:], box.stop[1:])
        index = image.selection(spatial, self.times[pair][box.start[0]])
        try:
            data = np.asarray(array[index])
        except ZARR_READ_ERRORS as exc:
            raise InputError(f"{image.array}: cannot read {box}"
                             f"{damaged_chunk(array, image.array, index)} "
                             f"({type(exc).__name__}: {exc})") from None
        return data.reshape(image.channels, *box.shape)

    def _read_foreground(self, pair: int, box: Box) -> np.ndarray:
        return foreground_of(self._read(pair, "target", box), self.foreground_rule)

    # -- sampling --------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Draw the locations and augmentations of ``epoch`` from now on."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def plan(self, index: int) -> PatchPlan:
        """Where sample ``index`` of the current epoch comes from and how it is augmented."""
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} outside a dataset of {self.length}")
        pair, start = self.sampler.location(
            self.epoch * self.length + index,
            np.random.default_rng([self.seed, self.epoch, index, 0]), self._read_foreground,
        )
        params = None
        if self.augment is not None:
            params = sample_augmentation(
                np.random.default_rng([self.seed, self.epoch, index, 1]), self.augment,
                self.out_shape, self.images[pair]["raw"].voxel_size[-len(self.out_shape):],
            )
        return PatchPlan(pair, start[1:], params, self.times[pair][start[0]])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        plan = self.plan(index)
        pair, params = plan.pair, plan.augment
        patch = self.patches[pair]
        lead = len(patch) - len(self.out_shape)
        start = (self.times[pair].index(plan.t), *plan.start)
        box = Box.from_shape(patch, start)
        local = None
        if params is not None and params.warps:
            # Warped patches mirror at the faces of their region, never reading the other split.
            region = self.regions[pair]
            origin = tuple(s - r for s, r in zip(start, region.start))[lead:]
            coords = source_coordinates(params, self.out_shape, origin, region.shape[lead:])
            inner = source_box(coords, region.shape[lead:])
            local = coords - np.reshape(inner.start, (-1,) + (1,) * len(self.out_shape))
            inner = inner.shift(region.start[lead:])
            box = Box(start[:lead] + inner.start, box.stop[:lead] + inner.stop)
        out = {}
        for role in self.images[pair]:
            data = self._read(pair, role, box).reshape(-1, *box.shape[lead:])
            if role == "raw":
                data = self._normalize(pair, data)
            elif role == "target" and self.target is not None:
                data = self.target(data)
            if local is not None:
                integer = np.issubdtype(data.dtype, np.integer) or data.dtype == bool
                data = warp(data, local, order=0 if role == "mask" or integer else 1)
            if params is not None:
                data = flip_rotate(data, params)
            if role == "raw" and params is not None:
                data = adjust_intensity(data, params)
            name = "image" if role == "raw" else role
            out[name] = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        start3 = (0,) * (3 - len(plan.start)) + tuple(plan.start)
        out["location"] = torch.tensor((pair, *start3), dtype=torch.int64)
        out["t"] = torch.tensor(plan.t, dtype=torch.int64)
        return out

    def _normalize(self, pair: int, block: np.ndarray) -> np.ndarray:
        return np.stack([normalize(channel, stats, self.method)
                         for channel, stats in zip(block, self.stats[pair])])
