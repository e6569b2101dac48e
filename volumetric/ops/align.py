"""Frame alignment of a time series (``vol align``), classical or learned.

Every frame is registered on one channel (:mod:`volumetric.kernels.registration`)
to a reference frame, by default the middle one (the nearest to all others on
average, so the motions to recover are smallest), or to the previous frame
with the transforms composed along the recording (then frame 0 is the
reference). With ``dims=2`` (the default) the channel's maximum projection
along ``z`` is registered and the frame's 2D transform (a 3x3 matrix over
``(row, col, 1)``) is applied to every channel and ``z`` plane; with
``dims=3`` the channel's whole ``(Z, Y, X)`` frame is registered, rotations
rigid in the input's physical voxel size, and the 3D transform (a 4x4 matrix
over ``(z, y, x, 1)`` voxel positions) warps every channel in 3D.

Both steps are block jobs with one task per frame. The registration task
leaves its transform in the output's scratch folder, so an interrupted run
resumes without registering again. ``OUT/0`` has the input's shape, dtype,
axes and metadata; ``OUT/transforms.json`` (one object per frame: ``t``,
``fixed``, ``matrix``, ``score``...) and ``OUT/transforms.csv`` are written,
atomically, after the last frame and before the store is marked complete.
Positions outside the moving frame are filled with 0. The learned method
(:mod:`volumetric.ops.align_learned`) replaces the registration by trained
matchers and may add a thin-plate spline (``tps`` in ``transforms.json``).
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
from volumetric.io.frames import check_time_series, frame_box, projections
from volumetric.io.ome import LevelSpec, OmeImage, create_image, open_image
from volumetric.io.sources import Source
from volumetric.io.writes import write_box
from volumetric.kernels.registration import MODELS, describe, ncc, register, warp
from volumetric.ops.common import chunks_of, open_input, small_job, spacing_of
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute

METHODS = ("classical", "learned")
DIMS = (2, 3)
MOVIE_SUFFIXES = (".mp4", ".gif")


def registered_image(source: Source, t: int, channel: int, dims: int) -> np.ndarray:
    """What is registered of frame ``t``: one channel's z maximum or whole volume.

    ``(Y, X)``, the maximum over ``z``, with ``dims=2``; ``(Z, Y, X)`` with ``dims=3``.
    """
    if dims == 2:
        return projections(source, t, channel)[0]
    return source.read(frame_box(source, t, channel)).reshape(source.shape[-3:])


def save_record(folder: str, record: dict) -> None:
    """Leave a registration task's ``record`` of frame ``record["t"]`` in ``folder``, atomically."""
    path = Path(folder) / f"{record['t']}.json"
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


@dataclass(frozen=True)
class RegisterFrame:
    """Block task: register frame ``t`` (the box's) to its fixed frame; the transform to a file."""

    source: Source
    channel: int
    reference: int | None  # None: the previous frame
    model: str
    folder: str
    dims: int = 2
    spacing: tuple[float, ...] | None = None  # per registered axis, None: isotropic

    def __call__(self, box: Box) -> float:
        t = box.start[0]
        fixed_t = t - 1 if self.reference is None else self.reference
        moving = registered_image(self.source, t, self.channel, self.dims)
        if fixed_t < 0 or fixed_t == t:
            fixed, matrix, score = moving, np.eye(self.dims + 1), 1.0
        else:
            fixed = registered_image(self.source, fixed_t, self.channel, self.dims)
            matrix, score = register(fixed, moving, self.model, spacing=self.spacing)
        save_record(self.folder, {"t": t, "fixed": max(fixed_t, 0),
                                  "pair_matrix": matrix.tolist(), "score": score,
                                  "score_before": ncc(fixed, moving)})
        return score


@dataclass(frozen=True)
class WarpFrame:
    """Block task: warp every channel (each plane in 2D, each volume in 3D) of frame ``t``."""

    source: Source
    dst: str
    matrices: tuple[tuple[float, ...], ...]  # per frame, the 3x3 or 4x4 matrix flattened
    dims: int = 2

    def __call__(self, box: Box) -> int:
        data = self.source.read(box)
        matrix = np.array(self.matrices[box.start[0]]).reshape(self.dims + 1, self.dims + 1)
        parts = data.reshape(-1, *data.shape[-self.dims:])
        out = np.stack([warp(p, matrix) for p in parts]).reshape(data.shape)
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
    dims: int = 2


def _check(source: Source, src: str, reference: int | str | None, channel: int,
           dims: int = 2) -> int | None:
    """Refuse an input or option no alignment can use; the reference frame (None: previous)."""
    check_time_series(source, src, "alignment")
    axes, count = source.axes, source.shape[0]
    if dims == 3 and ("z" not in axes or source.shape[axes.index("z")] < 2):
        raise InputError(f"--dims 3 registers volumes and needs a z axis of 2 planes or more; "
                         f"FRAMES {src} has axes {axes!r}, shape {source.shape}")
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
    composed = [np.eye(len(pairs[0]))]
    for pair in pairs[1:]:
        composed.append(pair @ composed[-1])
    return composed


def _tables(records: list[dict], json_path: Path, csv_path: Path, dims: int = 2,
            spacing: tuple[float, ...] | None = None) -> None:
    """Write the transforms as JSON and CSV (readable parameters, :func:`describe`), atomically."""
    with replacing([json_path, csv_path], overwrite=True) as (tmp_json, tmp_csv):
        tmp_json.write_text(json.dumps(records, indent=1))
        with open(tmp_csv, "w", newline="") as f:
            columns = ["t", "fixed", *describe(np.eye(dims + 1)), "score", "score_before"]
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            for r in records:
                writer.writerow({"t": r["t"], "fixed": r["fixed"],
                                 **describe(np.array(r["matrix"]), spacing),
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
    matcher: str | None = None,
    movie: str | None = None,
    dims: int = 2,
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
        Motion model of the classical method.
    method : {"classical", "learned"}
        ``learned``: the trained matchers of ``matcher``.
    matcher : str, optional
        ``RUN_DIR`` or ``AFFINE_RUN_DIR,TPS_RUN_DIR`` of ``vol train-matcher``
        runs (or their ``model.pt`` files), for the learned method.
    movie : str, optional
        Also write a before / after movie (``.mp4`` or ``.gif``).
    dims : {2, 3}
        2: register the channel's maximum projection along ``z`` and apply
        the 2D transform to every plane; 3: register the channel's whole
        ``(Z, Y, X)`` frame (``src`` needs a ``z`` axis), rotations rigid in
        the input's voxel size, and warp every channel in 3D.
    run : RunOptions

    Returns
    -------
    AlignReport
        ``records`` holds, per frame, ``t``, ``fixed`` (the frame it was
        registered to), ``matrix`` (reference positions to this frame's, see
        :mod:`volumetric.kernels.registration`: 3x3 over ``(row, col, 1)``
        pixels with ``dims=2``, 4x4 over ``(z, y, x, 1)`` voxels with
        ``dims=3``), ``score`` (NCC with the fixed frame after alignment) and
        ``score_before``.
    """
    check_choice(method, METHODS, "--method")
    check_choice(transform, MODELS, "--transform")
    if dims not in DIMS:
        raise InputError(f"--dims must be 2 or 3, got {dims!r}")
    if (method == "learned") != (matcher is not None):
        raise InputError("--method learned needs --matcher RUN_DIR[,RUN_DIR], and --matcher "
                         "goes with --method learned")
    if method == "learned" and dims == 3:
        raise InputError("--method learned matches the frames' z projections; use --dims 2")
    src, dst = absolute(src), absolute(dst)
    source = open_input(src, what="FRAMES")
    ref = _check(source, src, reference, channel, dims)
    matchers = ()
    if method == "learned":
        from volumetric.ops.align_learned import load_matchers

        matchers = load_matchers(matcher, source, src)
        if ref is None and matchers[-1].kind == "tps":
            raise InputError("--reference previous composes affine transforms along the "
                             "recording; with a TPS matcher give a reference frame")
    if movie is not None:
        from volumetric.io.movie import check_movie_writer

        check_movie_writer(movie)
        movie = str(claim_file(absolute(movie), inputs=(src,), outputs=(dst,),
                               overwrite=run.overwrite, suffixes=MOVIE_SUFFIXES, what="--movie"))
    count = source.shape[0]
    chunks = chunks_of(source, source.dtype)
    meta = source.meta(name=Path(dst).name)
    layout = {"operation": "align", "source": source.identity(),
              "reference": "previous" if ref is None else ref,
              "channel": channel, "method": method, "dims": dims,
              **({"transform": transform} if method == "classical" else
                 {"matchers": [m.path for m in matchers]})}
    frames = [frame_box(source, t) for t in range(count)]
    # rotations are rigid in physical units: the voxel size of the registered axes
    spacing = (spacing_of(source, what="FRAMES") if dims == 3
               else tuple(source.voxel_size[-2:]) if source.voxel_size else None)

    def create() -> None:
        create_image(dst, meta, [LevelSpec("0", source.shape, (1,) * len(source.shape))],
                     dtype=source.dtype, chunks=chunks)

    t0 = time.monotonic()
    with block_operation(ImageOutput(dst, layout, create, (src,)), run,
                         small=small_job(source)) as op:
        folder = op.scratch("transforms")
        if method == "learned":
            from volumetric.ops.align_learned import MatchFrame

            register = MatchFrame(source, matchers, channel, ref, str(folder))
        else:
            register = RegisterFrame(source, channel, ref, transform, str(folder), dims, spacing)
        op.run(register, frames, job="register", label="align register")
        records = [json.loads((folder / f"{t}.json").read_text()) for t in range(count)]
        pairs = [np.array(r["pair_matrix"]) for r in records]
        matrices = _compose(pairs) if ref is None else pairs
        for r, m in zip(records, matrices):
            r["matrix"] = m.tolist()
            if ref is not None:
                del r["pair_matrix"]
        flat = tuple(tuple(m.ravel().tolist()) for m in matrices)
        if method == "learned":
            from volumetric.ops.align_learned import GridWarpFrame

            splines = tuple(tuple(r["tps"]) if "tps" in r else None for r in records)
            warp_frame = GridWarpFrame(source, f"{dst}/0", flat, splines)
        else:
            warp_frame = WarpFrame(source, f"{dst}/0", flat, dims)
        op.run(warp_frame, frames, job="warp", label="align warp")
        _tables(records, Path(dst) / "transforms.json", Path(dst) / "transforms.csv", dims,
                spacing)
    if movie is not None:
        _movie(source, open_input(dst, what="OUT"), movie, run.overwrite)
    return AlignReport(open_image(dst), "previous" if ref is None else ref, records,
                       time.monotonic() - t0, op.resumed, movie, dims)
