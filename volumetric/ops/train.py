"""``vol train``: train a network on patches read lazily from OME-Zarr volumes.

The run directory is described in :mod:`volumetric.train.rundir`. A run is
defined by its ``config.json`` (file paths stored absolute and compared with
their symbolic links resolved, so they may be spelled differently later);
``--resume`` continues a run with the same configuration (only the device,
the number of loader workers and the volumetric version may change) from its
last finished epoch.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from volumetric._version import __version__
from volumetric.engine import JOURNAL_DIR, acquire_lease, silenced
from volumetric.errors import InputError
from volumetric.kernels.augment import AugmentConfig
from volumetric.models.checkpoint import read_checkpoint, registered_architecture
from volumetric.models.device import resolve_device
from volumetric.models.factory import build_network, is_custom
from volumetric.models.registry import canonical_name
from volumetric.models.transfer import describe, load_initial_weights, parse_freeze
from volumetric.models.transfer import freeze as freeze_layers
from volumetric.ops.paths import absolute
from volumetric.ops.train_runs import TrainReport, check_same_run, map_paths, stored_run
from volumetric.train import NetworkSpec, TrainSettings, fit, rundir
from volumetric.train.losses import get_loss
from volumetric.train.targets import (
    BINARY_KINDS,
    TargetTransform,
    plan_target,
    sample_target,
    target_kind,
)

log = logging.getLogger("volumetric")

DIMS_OF = {"unet2d": 2, "unet3d": 3, "attention-resunet2d": 2, "attention-resunet3d": 3}


@dataclass(frozen=True)
class DataSettings:
    """Where patches come from.

    Parameters
    ----------
    raw, target : str
        OME-Zarr images of one shape and voxel size.
    mask : str, optional
        Loss mask image (nonzero: the voxel counts).
    pairs : sequence of (raw, target, mask or None)
        More training volumes (of any shape; the same channel counts, and
        masks in all pairs or none), sampled together with the first.
    patch : (z, y, x), optional
        Patch shape (``1,y,x`` for 2D patches); default 64^3, or 1x256x256
        for 2D images, clipped to the image.
    sampler : {"random", "grid", "foreground"}
        Training patch sampler (see :class:`volumetric.train.dataset.PatchDataset`).
    foreground_probability : float
        Share of foreground-centred patches (foreground sampler).
    foreground : str
        Which target voxels are foreground, e.g. ``">0"`` or ``"<5"``; also
        the rule binarising mask and label targets.
    target_kind : {"auto", "mask", "labels", "distance", "image"}
        What the targets are (see :mod:`volumetric.train.targets`); ``auto``
        detects it from the dtype and a sample of values.
    target_normalize : {"percentile", "zscore", "none"}, optional
        Normalisation of image and distance targets, stored with the model so
        that ``vol predict`` writes predictions in the target's units; default
        ``percentile`` for images (``none`` with a mask loss), ``none`` for
        distance maps.
    augment : bool
        Augment the training patches as ``augmentation`` says.
    augment_off : sequence of str
        Augmentations switched off (names in :data:`volumetric.kernels.augment.SWITCHES`).
    normalize : {"percentile", "zscore", "none"}
        Raw intensity normalisation; stored with the model for inference.
    cubes : str, optional
        Cube list from ``vol discover`` restricting sampling in ``raw``.
    pair_cubes : sequence of str or None
        Cube lists of the volumes of ``pairs``, in order (None, or a shorter
        sequence: the others are sampled everywhere).
    t : str or sequence of int, optional
        Time points sampled in images with a ``t`` axis, e.g. ``"0:10"`` (0
        to 9) or ``"0,4,7"``; every one by default. 2D patches come from
        every plane of every selected time point.
    val_split : {"auto", "fraction", "planes", "t", "volume"}
        What validation keeps: the last ``val_fraction`` of the longest axis
        of each volume (``fraction``), of its planes, of its time points, or
        of the volumes (``volume``: the last ``pairs``). ``auto``: ``planes``
        for 2D patches of z-stacks, ``t`` for 2D patches of time series of
        2D images, ``fraction`` otherwise.
    val : (raw, target, mask or None), optional
        A validation volume instead of a split (same channels and dims).
    val_fraction : float
        Share kept for validation (see ``val_split``); 0 disables
        validation (without ``val``).
    val_patches : int
        Validation patches (the same ones every epoch, not augmented).
    steps_per_epoch : int
        Optimiser steps per epoch (``steps_per_epoch * batch`` patches).
    augmentation : AugmentConfig
        Which augmentations, how strong (:class:`volumetric.kernels.augment.AugmentConfig`).
    """

    raw: str
    target: str
    mask: str | None = None
    pairs: tuple[tuple[str, str, str | None], ...] = ()
    pair_cubes: tuple[str | None, ...] = ()
    patch: tuple[int, ...] | None = None
    sampler: str = "random"
    foreground_probability: float = 0.5
    foreground: str = ">0"
    target_kind: str = "auto"
    target_normalize: str | None = None
    augment: bool = True
    augment_off: tuple[str, ...] = ()
    normalize: str = "percentile"
    cubes: str | None = None
    t: str | tuple[int, ...] | None = None
    val_split: str = "auto"
    val: tuple[str, str, str | None] | None = None
    val_fraction: float = 0.2
    val_patches: int = 32
    steps_per_epoch: int = 100
    augmentation: AugmentConfig = AugmentConfig()


@dataclass(frozen=True)
class ModelChoice:
    """Which network to train.

    Parameters
    ----------
    name : str, optional
        A registered architecture or ``module:factory``; default ``unet2d``
        or ``unet3d`` by the patch (or the ``--init`` checkpoint's).
    config : dict
        Factory keyword arguments (built-ins also get ``in_channels``,
        ``out_channels`` and, for ``attention-resunet``, ``spatial_dims``).
    init : str, optional
        Checkpoint whose weights start the training.
    freeze : str
        ``none``, ``last-N`` (``all-but-last-N``), ``encoder``, ``decoder`` or module
        names (see :mod:`volumetric.models.transfer`).
    """

    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    freeze: str = "none"


def _choose_target(targets: list[str], data: DataSettings,
                   settings: TrainSettings) -> tuple[TrainSettings, TargetTransform, float, str]:
    """The settings with loss ``auto`` resolved, the target transform, the span of the
    learned values (for PSNR and SSIM) and a line saying what the target is.

    Loss ``auto`` is ``bce-dice`` for masks and labels, else ``mse``. With a
    mask loss, image and distance targets are used as they are unless
    ``target_normalize`` says otherwise (probabilities stay in [0, 1]).
    """
    samples = [sample_target(path) for path in targets]
    kind = target_kind(samples, data.target_kind)
    if settings.loss == "auto":
        settings = replace(settings, loss="bce-dice" if kind in BINARY_KINDS else "mse")
    loss = get_loss(settings.loss)
    if kind == "labels" and not loss.for_masks:
        raise InputError(f"--loss {loss.name} regresses values, but the target is a label image "
                         "(one id per object); use a mask loss such as bce-dice, which learns "
                         "its foreground (--foreground)")
    normalize = data.target_normalize or ("none" if loss.for_masks else None)
    transform = plan_target(samples, kind, normalize, data.foreground)
    spans = []
    for sample in samples:
        low, high = transform.learned_span(sample)
        loss.check_target(low, high, f"target {sample.path} ({sample.dtype})")
        spans += [low, high]
    seen = "; ".join(sample.describe(kind) for sample in samples)
    line = f"target: {kind} ({seen}) → {transform.describe()}"
    return settings, transform, max(max(spans) - min(spans), 1e-12), line


def _architecture(choice: ModelChoice, dims: int, checkpoint: dict[str, Any] | None) -> str:
    if choice.name:
        name = canonical_name(choice.name)
    elif checkpoint is not None:
        name = registered_architecture(checkpoint, choice.init, option="--init")
    else:
        name = f"unet{dims}d"
    wanted = DIMS_OF.get(name)
    if wanted is not None and wanted != dims:
        raise InputError(f"--model {name} needs {wanted}D patches but --patch gives {dims}D "
                         f"patches; use --model {name[:-2]}{dims}d or another --patch")
    return name


def _model_config(name: str, choice: ModelChoice, checkpoint: dict[str, Any] | None,
                  dims: int, in_channels: int, out_channels: int) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if checkpoint is not None and checkpoint["architecture"] == name:
        config.update(checkpoint["model_config"])
    if not is_custom(name):
        config.update(in_channels=in_channels, out_channels=out_channels, output_activation="none")
        if name == "attention-resunet":
            config["spatial_dims"] = dims
    config.update(choice.config)
    return config


def train(
    data: DataSettings,
    out: str | Path,
    *,
    model: ModelChoice = ModelChoice(),
    settings: TrainSettings = TrainSettings(),
    resume: bool = False,
    progress: bool = True,
) -> TrainReport:
    """Train a network on ``data`` and write the run directory ``out``.

    Parameters
    ----------
    data : DataSettings
        Volumes, patches, sampling, augmentation and validation split.
    out : str or Path
        Run directory (created).
    model : ModelChoice
        Architecture, its configuration, initial weights and freezing.
    settings : TrainSettings
        Loss, optimiser, schedule, steps, device, workers, seed. Loss ``auto``
        is ``bce-dice`` for mask and label targets (binarised) and ``mse`` for
        image and distance targets, also for float targets within [0, 1].
    resume : bool
        Continue the run in ``out`` (same options); without a run there, start one.
    progress : bool
        Show the progress bar and a line per epoch (never under ``vol -q``,
        see :func:`volumetric.engine.silence`).

    Returns
    -------
    TrainReport

    Raises
    ------
    InputError
        Mismatched volumes, a patch that does not fit, an empty cube list, a
        target that does not suit the loss (a label image for a regression
        loss), a checkpoint of another architecture, or options that differ from the resumed run.
    DestinationError
        ``out`` holds another run (without ``--resume``) or other files.
    """
    import torch

    from volumetric.ops.common import default_patch
    from volumetric.ops.train_data import patch_datasets, volume_pairs

    started = time.perf_counter()
    out = Path(out)
    inputs = [data.raw, data.target, data.mask, data.cubes, model.init, *(data.val or ()),
              *(path for pair in data.pairs for path in pair), *data.pair_cubes]
    stored = stored_run(out, resume, inputs)
    if settings.loss == "grid":
        raise InputError("--loss grid trains geometric matchers; use `vol train-matcher`")
    resolve_device(settings.device)
    parse_freeze(model.freeze)
    augmentation = data.augmentation.without(data.augment_off) if data.augment else None
    pairs = volume_pairs(data)
    settings, target, data_range, target_line = _choose_target([p.target for p in pairs], data,
                                                               settings)
    settings = settings.with_epochs(data.steps_per_epoch)
    checkpoint = read_checkpoint(model.init) if model.init else None

    patch = data.patch or default_patch(data.raw)
    train_set, val_set = patch_datasets(data, pairs, patch, seed=settings.seed,
                                        batch=settings.batch, augment=augmentation,
                                        target=target)
    sample = train_set[0]
    dims = sample["image"].dim() - 1
    in_channels, out_channels = sample["image"].shape[0], sample["target"].shape[0]

    name = _architecture(model, dims, checkpoint)
    config = _model_config(name, model, checkpoint, dims, in_channels, out_channels)
    run_config = {
        "version": __version__,
        "data": {**asdict(data), "patch": list(patch)},
        "model": {"architecture": name, "config": config, "init": model.init,
                  "freeze": model.freeze},
        "target": target.metadata(),
        **settings.to_json(),
    }
    run_config = map_paths(json.loads(json.dumps(run_config)), absolute)
    if stored is not None:
        check_same_run(out, stored, run_config)

    torch.manual_seed(settings.seed)
    net = build_network(name, config)
    if checkpoint is not None and stored is None:
        load_initial_weights(net, checkpoint, name, source=str(model.init))
    layers = freeze_layers(net, model.freeze, sample["image"][None])
    if not all(layer.trained for layer in layers):
        line = f"--freeze {model.freeze}: {describe(net, layers)}"
        log.info(line)
        if progress and not silenced():
            print(line, file=sys.stderr)
    _check_output(net, sample, name)

    if progress and not silenced():
        print(target_line, file=sys.stderr, flush=True)
    lease = acquire_lease(out / JOURNAL_DIR, what=str(out))
    try:
        rundir.write_config(out, {**run_config, "layers": [asdict(s) for s in layers]})
        spec = NetworkSpec(name, config, dims, in_channels, out_channels,
                         get_loss(settings.loss).output_activation,
                         {"normalize": data.normalize}, tuple(patch), target.metadata())
        result = fit(net, train_set, val_set, spec, settings, out, resume=stored is not None,
                     data_range=data_range, progress=progress and not silenced())
    finally:
        lease.release()
    return TrainReport(out, name, result, time.perf_counter() - started, layers)


def _check_output(net: Any, sample: dict[str, Any], name: str) -> None:
    """Refuse a network whose output does not have the target's shape."""
    import torch

    net.eval()
    with torch.no_grad():
        output = net(sample["image"][None])
    expected = (1, *sample["target"].shape)
    if tuple(output.shape) != expected:
        raise InputError(f"--model {name} maps a patch {tuple(sample['image'][None].shape)} to "
                         f"{tuple(output.shape)}, but the target patch is {expected}")

