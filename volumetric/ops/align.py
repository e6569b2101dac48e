"""Frame alignment of a time series (``vol align``), classical method.

Every frame is registered on one channel's maximum projection along ``z``
(:mod:`volumetric.kernels.registration`) to a reference frame, by default
the middle one (the nearest to all others on average, so the motions to
recover are smallest), or to the previous frame with the transforms
composed along the recording (then frame 0 is the reference). Each frame's
2D transform is then applied to every channel and ``z`` plane.

Both steps are block jobs with one task per frame. The registration task
leaves its transform in the output's scratch folder, so an interrupted run
resumes without registering again. ``OUT/0`` has the input's shape, dtype,
axes and metadata; ``OUT/transforms.json`` (one object per frame: ``t``,
``fixed``, ``matrix``, ``score``...) and ``OUT/transforms.csv`` are written,
atomically, after the last frame and before the store is marked complete.
Positions outside the moving frame are filled with 0.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError, check_choice
from volumetric.geometry import Box
from volumetric.io.destination import claim_file, replacing
from volumetric.io.ome import LevelSpec, OmeImage, create_image, open_image
from volumetric.io.sources import Source
from volumetric.io.writes import write_box
from volumetric.kernels.registration import MODELS, describe, ncc, register, warp
from volumetric.ops.common import chunks_of, open_input, small_job
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute

METHODS = ("classical", "learned")
MOVIE_SUFFIXES = (".mp4", ".gif")


def _frame_box(source: Source, t: int, channel: int | None = None) -> Box:
    """The whole frame ``t`` (or its channel ``channel``) as a box of ``source``."""
    start, stop = [], []
    for axis, size in zip(source.axes, source.shape):
        lo, hi = ((t, t + 1) if axis == "t" else
                  (channel, channel + 1) if axis == "c" and channel is not None else (0, size))
        start.append(lo)
        stop.append(hi)
    return Box(tuple(start), tuple(stop))


def projections(source: Source, t: int, channel: int | None = None) -> np.ndarray:
    """Frame ``t`` as ``(C, Y, X)`` maxima over ``z`` (one channel when ``channel`` is given)."""
    data = source.read(_frame_box(source, t, channel))
    axes = source.axes
    if "z" in axes:
        data = data.max(axis=axes.index("z"), keepdims=True)
    return data.reshape(-1, *data.shape[-2:])


@dataclass(frozen=True)
class RegisterFrame:
    """Block task: register frame ``t`` (the box's) to its fixed frame; the transform to a file."""

    source: Source
    channel: int
    reference: int | None  # None: the previous frame
    model: str
    folder: str

    def __call__(self, box: Box) -> float:
        t = box.start[0]
        fixed_t = t - 1 if self.reference is None else self.reference
        moving = projections(self.source, t, self.channel)[0]
        if fixed_t < 0 or fixed_t == t:
            fixed, matrix, score = moving, np.eye(3), 1.0
        else:
            fixed = projections(self.source, fixed_t, self.channel)[0]
            matrix, score = register(fixed, moving, self.model)
        record = {"t": t, "fixed": max(fixed_t, 0), "pair_matrix": matrix.tolist(),
                  "score": score, "score_before": ncc(fixed, moving)}
        path = Path(self.folder) / f"{t}.json"
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
        return score


@dataclass(frozen=True)
class WarpFrame:
    """Block task: warp every channel and plane of frame ``t`` by its transform."""

    source: Source
    dst: str
    matrices: tuple[tuple[float, ...], ...]  # per frame, the 3x3 matrix flattened

    def __call__(self, box: Box) -> int:
        data = self.source.read(box)
        matrix = np.array(self.matrices[box.start[0]]).reshape(3, 3)
        planes = data.reshape(-1, *data.shape[-2:])
        out = np.stack([warp(p, matrix) for p in planes]).reshape(data.shape)
        write_box(self.dst, box.slices, out)
        return int(out.size)


@dataclass
class AlignReport:
    """What :func:`align` did: the image, per-frame transforms and scores."""

    image: OmeImage
    reference: int | str
    records: list[dict]
    seconds: float
    resumed: bool
    movie: str | None


def _check(source: Source, src: str, reference: int | str | None, channel: int) -> int | None:
    """Refuse an input or option no alignment can use; the reference frame (None: previous)."""
    axes = source.axes
    if "t" not in axes or not axes.endswith("yx"):
        raise InputError(f"FRAMES {src} has axes {axes!r}; alignment needs a time series "
                         "with t, y and x axes")
    count = source.shape[0]
    if count < 2:
        raise InputError(f"FRAMES {src} has a single frame; alignment needs at least 2")
    channels = source.shape[axes.index("c")] if "c" in axes else 1
    if not 0 <= channel < channels:
        raise InputError(f"--channel {channel} does not exist: FRAMES has {channels} "
                         f"channel(s), 0..{channels - 1}")
    if reference == "previous":
        return None
    if reference is None:
        return count // 2
    try:
        ref = int(reference)
    except ValueError:
        raise InputError(f"--reference must be a frame number or 'previous', "
                         f"got {reference!r}") from None
    if not 0 <= ref < count:
        raise InputError(f"--reference {ref} is out of range: FRAMES has frames 0..{count - 1}")
    return ref


def _compose(pairs: list[np.ndarray]) -> list[np.ndarray]:
    """Frame 0 to frame k transforms from frame k-1 to frame k ones (``M_k = P_k @ M_{k-1}``)."""
    composed = [np.eye(3)]
    for pair in pairs[1:]:
        composed.append(pair @ composed[-1])
    return composed


def _tables(records: list[dict], json_path: Path, csv_path: Path) -> None:
    """Write the transforms as JSON and CSV, atomically."""
    with replacing([json_path, csv_path], overwrite=True) as (tmp_json, tmp_csv):
        tmp_json.write_text(json.dumps(records, indent=1))
        with open(tmp_csv, "w", newline="") as f:
            columns = ["t", "fixed", *describe(np.eye(3)), "score", "score_before"]
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            for r in records:
                writer.writerow({"t": r["t"], "fixed": r["fixed"],
                                 **describe(np.array(r["matrix"])),
                                 "score": round(r["score"], 6),
                                 "score_before": round(r["score_before"], 6)})


def _movie(before: Source, after: Source, path: str, overwrite: bool, fps: float = 10.0) -> None:
    """Before / after, side by side: maximum projections in the OME channel colours.

    One contrast per channel for the whole movie, from percentiles of a few
    input frames (as ``vol export`` movies).
    """
    from volumetric.io.movie import write_movie
    from volumetric.io.ome import CHANNEL_COLOURS
    from volumetric.kernels.display import colour_frame, frame_contrast, pad_even, spread

    count = before.shape[0]
    lows, highs = frame_contrast([projections(before, t) for t in spread(count)])

    def frames():
        for t in range(count):
            pair = [colour_frame(projections(s, t), CHANNEL_COLOURS, lows, highs)
                    for s in (before, after)]
            gap = np.full((pair[0].shape[0], 4, 3), 255, np.uint8)
            yield pad_even(np.concatenate([pair[0], gap, pair[1]], axis=1))

    with replacing([path], overwrite=overwrite) as (tmp,):
        write_movie(str(tmp), frames(), fps)


def align(
    src: str,
    dst: str,
    *,
    reference: int | str | None = None,
    channel: int = 0,
    transform: str = "rigid",
    method: str = "classical",
    movie: str | None = None,
    run: RunOptions = RunOptions(),
) -> AlignReport:
    """Align every frame of the time series ``src`` and write the OME-Zarr image ``dst``.

    Parameters
    ----------
    src : str
        A time series (``t`` axis, e.g. ``tczyx``).
    dst : str
        Output OME-Zarr image; also receives ``transforms.json`` and ``transforms.csv``.
    reference : int or "previous", optional
        The frame every frame is registered to (default: the middle one,
        ``count // 2``), or ``"previous"``: each frame to the one before,
        transforms composed from frame 0.
    channel : int
        The channel registered (all channels are warped).
    transform : {"translation", "rigid", "affine"}
    method : {"classical"}
        ``"learned"`` is not available yet.
    movie : str, optional
        Also write a before / after movie (``.mp4`` or ``.gif``).
    run : RunOptions

    Returns
    -------
    AlignReport
        ``records`` holds, per frame, ``t``, ``fixed`` (the frame it was
        registered to), ``matrix`` (3x3, reference ``(row, col, 1)`` pixel
        positions to this frame's, see :mod:`volumetric.kernels.registration`),
        ``score`` (NCC with the fixed frame after alignment) and ``score_before``.
    """
    check_choice(method, METHODS, "--method")
    if method == "learned":
        raise InputError("--method learned: learned matching is not available yet; "
                         "use --method classical")
    check_choice(transform, MODELS, "--transform")
    src, dst = absolute(src), absolute(dst)
    source = open_input(src, what="FRAMES")
    ref = _check(source, src, reference, channel)
    if movie is not None:
        movie = str(claim_file(absolute(movie), inputs=(src,), outputs=(dst,),
                               overwrite=run.overwrite, suffixes=MOVIE_SUFFIXES, what="--movie"))
    count = source.shape[0]
    chunks = chunks_of(source, source.dtype)
    meta = source.meta(name=Path(dst).name)
    layout = {"operation": "align", "source": source.identity(),
              "reference": "previous" if ref is None else ref,
              "channel": channel, "transform": transform, "method": method}
    frames = [_frame_box(source, t) for t in range(count)]

    def create() -> None:
        create_image(dst, meta, [LevelSpec("0", source.shape, (1,) * len(source.shape))],
                     dtype=source.dtype, chunks=chunks)

    t0 = time.monotonic()
    with block_operation(ImageOutput(dst, layout, create, (src,)), run,
                         small=small_job(source)) as op:
        folder = op.scratch("transforms")
        op.run(RegisterFrame(source, channel, ref, transform, str(folder)), frames,
               job="register", label="align register")
        records = [json.loads((folder / f"{t}.json").read_text()) for t in range(count)]
        pairs = [np.array(r["pair_matrix"]) for r in records]
        matrices = _compose(pairs) if ref is None else pairs
        for r, m in zip(records, matrices):
            r["matrix"] = m.tolist()
            if ref is not None:
                del r["pair_matrix"]
        flat = tuple(tuple(m.ravel().tolist()) for m in matrices)
        op.run(WarpFrame(source, f"{dst}/0", flat), frames, job="warp", label="align warp")
        _tables(records, Path(dst) / "transforms.json", Path(dst) / "transforms.csv")
    if movie is not None:
        _movie(source, open_input(dst, what="OUT"), movie, run.overwrite)
    return AlignReport(open_image(dst), "previous" if ref is None else ref, records,
                       time.monotonic() - t0, op.resumed, movie)
