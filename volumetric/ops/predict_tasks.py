"""The block tasks of ``vol predict``: evaluate windows, then blend.

Phase 1 (:class:`EvaluateWindows`) runs once per block that owns windows:
it reads and normalises the block's input (its first rows in a task of
their own, ahead), evaluates each of its windows once and stores the fp32
weighted sum and weight sum over its region in a scratch file that only
this block writes. Phase 2 (:class:`BlendBlock`) runs once per output
block: it adds up the scratch regions overlapping the block, divides by the
weights, post-processes and writes its chunks once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from typing import NamedTuple

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import Box, Coord
from volumetric.io.sources import Source
from volumetric.io.writes import write_box, writing
from volumetric.kernels.blending import Accumulator, normalize_sums, postprocess, window_weights
from volumetric.kernels.inference import gather_windows, run_model
from volumetric.models.device import resolve_device
from volumetric.models.loading import LoadedModel, ModelSource, cached_model
from volumetric.models.torch_messages import error_cause
from volumetric.ops.common import NormalizedInput
from volumetric.windows import WindowPlan


def partial_path(folder: str, box: Box) -> str:
    """The scratch file of the block whose write box is ``box``."""
    return os.path.join(folder, f"{box.key()}.npy")


def _batches(items: Sequence[Coord], size: int) -> Iterator[Sequence[Coord]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class WindowRows(NamedTuple):
    """A block's windows in rows along the first axis, and what each row reads.

    ``region`` is the box its windows cover; ``rows`` its window starts grouped
    by first-axis start; ``slabs[i]`` the first-axis range of the region that
    row ``i`` needs beyond the rows before it.
    """

    region: Box
    rows: list[list[Coord]]
    slabs: list[tuple[int, int]]


@dataclass(frozen=True)
class EvaluateWindows:
    """Phase 1 block task: evaluate the windows a block owns; returns their number.

    The input is read in slabs along the first axis, in the order the rows of
    windows need them. The first slab comes from :meth:`read_first_rows`, run
    as a task of its own ahead of this one (``run_blocks(prepare=...)``), so
    that a worker reads its next block while its GPU evaluates this one; the
    other slabs are read by a background thread while the model works.
    """

    plan: WindowPlan
    reader: NormalizedInput
    model: ModelSource
    device: str
    blend: str
    batch: int
    amp: str | None
    out_channels: int
    partials: str

    def _rows(self, box: Box) -> WindowRows:
        starts = sorted(self.plan.windows_of(self.plan.blocks.index_of(box.start)))
        window = self.plan.windows.window
        region = Box(tuple(min(a) for a in zip(*starts)),
                     tuple(max(a) + w for a, w in zip(zip(*starts), window)))
        rows = [list(row) for _, row in groupby(starts, key=lambda s: s[0])]
        stops = [row[0][0] + window[0] for row in rows]
        return WindowRows(region, rows, list(zip([region.start[0], *stops[:-1]], stops)))

    def _fill(self, image: np.ndarray, outer: Box, lo: int, hi: int) -> None:
        box = Box((lo, *outer.start[1:]), (hi, *outer.stop[1:])).clip(self.plan.windows.shape)
        if not box.empty:
            image[(slice(None), *box.relative_to(outer))] = self.reader.read(box)

    def read_first_rows(self, box: Box) -> np.ndarray:
        """The normalised input of the block's first row of windows (zero outside the volume)."""
        planned = self._rows(box)
        lo, hi = planned.slabs[0]
        first = Box((lo, *planned.region.start[1:]), (hi, *planned.region.stop[1:]))
        image = np.zeros((len(self.reader.stats), *first.shape), dtype=np.float32)
        self._fill(image, first, lo, hi)
        return image

    def __call__(self, box: Box, first: np.ndarray) -> int:
        import torch

        from volumetric.engine import worker_threads

        device = resolve_device(self.device)
        if device == "cpu":
            torch.set_num_threads(worker_threads())
        model = cached_model(self.model, device=device).module
        window = self.plan.windows.window
        outer, rows, slabs = self._rows(box)  # region, rows of window starts, their slabs
        image = np.zeros((len(self.reader.stats), *outer.shape), dtype=np.float32)
        image[:, :first.shape[1]] = first
        weights = window_weights(window, self.blend)
        acc = Accumulator(outer.clip(self.plan.windows.shape), self.out_channels, weights,
                          device=device)
        with ThreadPoolExecutor(1) as pool:
            reads = [pool.submit(self._fill, image, outer, lo, hi) for lo, hi in slabs[1:]]
            for i, row in enumerate(rows):
                if i:
                    reads[i - 1].result()
                for batch in _batches(row, self.batch):
                    x = gather_windows(image, outer.start, batch, window, pin=device != "cpu")
                    out = run_model(model, x, device=device, amp=self.amp,
                                    out_channels=self.out_channels)
                    acc.add(out, batch)
        sums, finite = acc.result()
        if not finite:
            raise InputError("the model produced NaN or infinite values")
        path = partial_path(self.partials, box)
        tmp = f"{path}.{os.getpid()}.tmp.npy"
        with writing(path):
            np.save(tmp, sums)
            os.replace(tmp, path)
        return sum(len(row) for row in rows)


@dataclass(frozen=True)
class BlendBlock:
    """Phase 2 block task: sum the overlapping partial results, normalise, write once.

    Returns the number of voxels some window covered.
    """

    plan: WindowPlan
    partials: str
    array: str
    out_channels: int
    dtype: str
    clip: float | None
    threshold: float | None
    fill: float = 0.0
    unscale: tuple[tuple[float, float], ...] | None = None
    t: int | None = None  # the time point written, in an output with a t axis

    def __call__(self, box: Box) -> int:
        index = self.plan.blocks.index_of(box.start)
        sums = np.zeros((self.out_channels + 1, *box.shape), dtype=np.float32)
        for j, region in self.plan.sources_of(index):
            part = np.load(partial_path(self.partials, self.plan.blocks.box(j)), mmap_mode="r")
            if part.shape[1:] != region.shape:
                raise InputError(f"scratch data of block {j} does not match its region; rerun with --overwrite")
            both = region.intersect(box)
            sums[(slice(None), *both.relative_to(box))] += part[(slice(None), *both.relative_to(region))]
        inside = self.plan.in_cubes(box)
        if inside is not None:
            sums[-1][~inside] = 0  # outside the cubes: the fill value, as if no window ran
        pred, covered = normalize_sums(sums, fill=self.fill)
        count = int(covered.sum())
        if count:
            out = postprocess(pred, dtype=self.dtype, clip=self.clip, threshold=self.threshold,
                              unscale=self.unscale)
            lead = () if self.t is None else (self.t,)
            write_box(self.array, (*lead, slice(None), *box.slices), out)
        return count


@dataclass(frozen=True)
class OccupiedCubes:
    """Block task over a mask: indices of the cubes holding a nonzero voxel."""

    source: Source
    cube_shape: Coord

    def __call__(self, box: Box) -> list[Coord]:
        data = self.source.read(box)
        found = []
        for offset in np.ndindex(*(-(-s // c) for s, c in zip(box.shape, self.cube_shape))):
            cube = Box.from_shape(self.cube_shape, tuple(o * c for o, c in zip(offset, self.cube_shape)))
            if data[cube.clip(box.shape).slices].any():
                found.append(tuple(a // c + o for a, c, o in zip(box.start, self.cube_shape, offset)))
        return found


def probe_model(loaded: LoadedModel, channels: int, window: Sequence[int]) -> int:
    """Run a loaded model on one empty window; returns its number of output channels.

    Raises
    ------
    InputError
        The model cannot take ``channels`` input channels, or changes the window's shape.
    """
    import torch

    if loaded.in_channels is not None and loaded.in_channels != channels:
        raise InputError(
            f"the model takes {loaded.in_channels} input channel(s) but {channels} are given "
            "(choose them with --channels)"
        )
    squeezed = sum(w > 1 for w in window)
    if loaded.spatial_dims is not None and loaded.spatial_dims != squeezed:
        raise InputError(
            f"the model is {loaded.spatial_dims}D but the window {tuple(window)} feeds it "
            f"{squeezed}D input (a size-1 window axis makes 2D input)"
        )
    x = torch.zeros((1, channels, *window), dtype=torch.float32)
    try:
        out = run_model(loaded.module, x, out_channels=loaded.out_channels)
    except RuntimeError as exc:
        cause = error_cause(exc)
        hint = "; choose the input channels with --channels" if "channel" in cause else ""
        raise InputError(
            f"the model cannot run on windows of shape {tuple(x.shape)}: {cause}{hint}"
        ) from None
    return int(out.shape[1])
