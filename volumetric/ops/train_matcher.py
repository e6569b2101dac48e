"""``vol train-matcher``: train a geometric matcher on warped copies of a recording's frames.

The matcher (:mod:`volumetric.models.matching`, architecture ``matcher``)
learns from pairs made when read (:class:`volumetric.train.warp_pairs.WarpPairs`):
a frame's maximum projection and a randomly warped copy, the true warp known.
The first frames train; the last ``val_fraction`` of them give fixed
validation pairs, scored by the grid loss and by landmark errors in the
frames' pixels. The run directory is that of ``vol train``
(:mod:`volumetric.train.rundir`) on the same training loop: checkpoints,
``--resume``, ``metrics.csv``, ``curves.png``; ``vol align --method learned
--matcher RUN_DIR`` reads its ``model.pt``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from volumetric._version import __version__
from volumetric.engine import JOURNAL_DIR, acquire_lease, silenced
from volumetric.errors import InputError, check_choice
from volumetric.io.frames import check_frames, frame_channels
from volumetric.models.device import resolve_device
from volumetric.models.matching import ARCHITECTURE
from volumetric.models.warps import KINDS, PARAMETERS
from volumetric.ops.common import open_input
from volumetric.ops.paths import absolute
from volumetric.ops.train_runs import TrainReport, check_same_run, stored_run
from volumetric.train import NetworkSpec, TrainSettings, fit, rundir
from volumetric.train.warp_pairs import AUGMENTATIONS

DEFAULT_SETTINGS = TrainSettings(loss="grid", batch=8, lr=5e-4)


@dataclass(frozen=True)
class MatcherData:
    """The frames a matcher learns from and how its pairs are made.

    Parameters
    ----------
    frames : str
        A time series (``t``, ``y``, ``x`` axes; ``c`` and ``z`` optional).
    channels : sequence of int, optional
        Channels the matcher sees (default: all).
    size : (int, int)
        ``(H, W)`` of the matcher's input; frames are resized to it.
    pairs_per_frame : int
        Training pairs per training frame and epoch.
    val_fraction : float
        Share of the frames, the last ones, kept for validation (0: none).
    val_pairs : int
        Validation pairs (the same every epoch).
    augmentations : sequence of str
        Warps drawn from (:data:`volumetric.train.warp_pairs.AUGMENTATIONS`), e.g. only
        ``distort`` and ``noise`` for the second (TPS) stage after an affine matcher.
    """

    frames: str
    channels: tuple[int, ...] | None = None
    size: tuple[int, int] = (240, 240)
    pairs_per_frame: int = 10
    val_fraction: float = 0.2
    val_pairs: int = 64
    augmentations: tuple[str, ...] = AUGMENTATIONS


def _split(count: int, fraction: float) -> tuple[range, range]:
    val = min(count - 1, max(1, round(count * fraction))) if fraction > 0 else 0
    return range(count - val), range(count - val, count)


def train_matcher(
    data: MatcherData,
    out: str | Path,
    *,
    model: str = "affine",
    config: dict[str, Any] | None = None,
    settings: TrainSettings = DEFAULT_SETTINGS,
    resume: bool = False,
    progress: bool = True,
) -> TrainReport:
    """Train a geometric matcher of kind ``model`` on ``data``; write the run directory ``out``.

    Parameters
    ----------
    data : MatcherData
    out : str or Path
        Run directory (created).
    model : {"affine", "tps"}
        The transformation predicted (6 or 18 parameters).
    config : dict, optional
        More arguments of :func:`volumetric.models.matching.build_matcher`
        (``features``, ``depth``, ``head_features``, ``dropout``).
    settings : TrainSettings
        Optimisation settings; the loss is always ``grid``.
    resume : bool
        Continue the run in ``out`` (same options).
    progress : bool
        Show the progress bar and a line per epoch.

    Returns
    -------
    TrainReport

    Raises
    ------
    InputError
        Not a time series, a single frame, a missing channel, frames smaller than
        ``data.size``, or options that differ from the resumed run.
    DestinationError
        ``out`` holds another run (without ``resume``) or other files.
    """
    import torch

    from volumetric.models.matching import build_matcher
    from volumetric.train.warp_pairs import LandmarkMeter, WarpPairs

    started = time.perf_counter()
    check_choice(model, KINDS, "--model")
    out = Path(out)
    frames = absolute(data.frames)
    stored = stored_run(out, resume, [frames])
    resolve_device(settings.device)
    source = open_input(frames, what="FRAMES")
    size = tuple(int(s) for s in data.size)
    check_frames(source, frames, size)
    channels = frame_channels(source, data.channels, "--channels")
    unknown = [a for a in data.augmentations if a not in AUGMENTATIONS]
    if unknown or not data.augmentations:
        raise InputError(f"--augment {','.join(data.augmentations)}: choose among "
                         f"{', '.join(AUGMENTATIONS)}")
    data = replace(data, frames=frames, channels=channels, size=size)
    settings = replace(settings, loss="grid")
    train_times, val_times = _split(source.shape[0], data.val_fraction)
    common = {"channels": channels, "size": size, "augmentations": data.augmentations}
    train_set = WarpPairs(source, train_times, pairs=len(train_times) * data.pairs_per_frame,
                          seed=settings.seed, **common)
    val_set = WarpPairs(source, val_times, pairs=data.val_pairs, seed=settings.seed + 1,
                        fixed=True, with_landmarks=True, **common) if len(val_times) else None
    net_config = {"kind": model, "input_shape": [len(channels), *size], **(config or {})}
    run_config = json.loads(json.dumps({
        "version": __version__,
        "data": asdict(data),
        "model": {"architecture": ARCHITECTURE, "config": net_config},
        **settings.to_json(),
    }))
    if stored is not None:
        check_same_run(out, stored, run_config)

    torch.manual_seed(settings.seed)
    net = build_matcher(**net_config)
    frame_size = tuple(source.shape[-2:])
    spec = NetworkSpec(ARCHITECTURE, net_config, 2, 2 * len(channels), PARAMETERS[model],
                       "none", {"normalize": "percentile", "channels": list(channels),
                                "size": list(size)},
                       target={"kind": "matcher", "transform": model,
                               "frame_shape": list(frame_size)})
    lease = acquire_lease(out / JOURNAL_DIR, what=str(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
        rundir.write_config(out, run_config)
        result = fit(net, train_set, val_set, spec, settings, out, resume=stored is not None,
                     progress=progress and not silenced(),
                     meter=lambda: LandmarkMeter(frame_size))
    finally:
        lease.release()
    return TrainReport(out, ARCHITECTURE, result, time.perf_counter() - started, [])
