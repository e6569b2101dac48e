"""The training loop: epochs of patches, validation, checkpoints and exact resume.

Each epoch draws ``len(train_set)`` patches (the dataset decides which, from
its seed and the epoch), takes optimiser steps on batches, validates on the
same validation patches every epoch and writes the run directory (see
:mod:`volumetric.train.rundir`). Everything that influences later epochs —
weights, optimiser, scheduler, gradient scaler, early-stopping counters and
torch's random state — is saved in ``last.pt`` after every epoch, so a run
resumed from there continues exactly as if it had not stopped (bit for bit
on CPU).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from volumetric.errors import InputError, VolumetricError, check_choice
from volumetric.kernels.metrics import confusion, mask_scores, psnr_from_mse, ssim
from volumetric.models.checkpoint import read_checkpoint
from volumetric.models.device import resolve_device
from volumetric.models.export import WithActivation, save_torchscript, to_torchscript
from volumetric.models.transfer import hold_frozen_norms
from volumetric.train import rundir
from volumetric.train.losses import Loss, get_loss
from volumetric.train.rundir import NetworkSpec

log = logging.getLogger("volumetric")

OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "cosine", "exponential")
DEFAULT_EPOCHS = 10
# curves.png is redrawn while its drawing has taken at most this share of the run's time
CURVES_TIME_SHARE = 0.05


class PatchSource(Protocol):
    """What the loop needs from a dataset (e.g. :class:`volumetric.train.dataset.PatchDataset`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]: ...

    def set_epoch(self, epoch: int) -> None: ...


class Meter(Protocol):
    """Validation metrics accumulated over batches (e.g. :class:`_Validation`)."""

    def add(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> None: ...

    def result(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of a run.

    Parameters
    ----------
    loss : str
        A name in :data:`volumetric.train.losses.LOSSES`, or ``auto``
        (resolved by :func:`volumetric.ops.train.train` from the target).
    optimizer : {"adam", "adamw"}
    lr : float
        Initial learning rate.
    weight_decay : float
        Decoupled weight decay for AdamW, L2 penalty for Adam.
    betas : (float, float)
        Adam's decay rates of the gradient's running mean and of its square,
        each in [0, 1).
    eps : float
        Adam's term added to the denominator, > 0.
    batch : int
        Patches per optimiser step.
    epochs : int, optional
        Number of epochs; by default as many as ``steps`` needs, or 10 without ``steps``
        (see :meth:`with_epochs`).
    steps : int, optional
        Stop after this many optimiser steps in total (may end an epoch early).
    scheduler : {"none", "cosine", "exponential"}
        ``cosine``: cosine annealing to 0 over ``epochs``; ``exponential``:
        the first ``decay_after`` epochs run at ``lr``, then the rate is
        multiplied by ``decay_gamma`` every epoch (epoch ``decay_after``,
        counting from 0, runs at ``lr * decay_gamma``).
    patience : int, optional
        Stop when the monitored loss (validation, else training) has not
        improved for this many epochs.
    min_delta : float
        Smallest decrease of the monitored loss that counts as an improvement.
    clip_grad : float, optional
        Clip the global gradient norm to this value.
    amp : bool
        Mixed precision on CUDA (bf16 where supported, else fp16 with a
        gradient scaler); ignored on CPU.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    workers : int, optional
        DataLoader worker processes (0: load in the main process); by default
        0 on CPU (the cores train) and up to 4 on CUDA.
    seed : int
        Seed of torch's random generator (initial weights, dropout).
    """

    loss: str = "bce-dice"
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch: int = 4
    epochs: int | None = None
    steps: int | None = None
    scheduler: str = "none"
    decay_after: int = 10
    decay_gamma: float = 0.9
    patience: int | None = None
    min_delta: float = 0.0
    clip_grad: float | None = None
    amp: bool = True
    device: str = "auto"
    workers: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss != "auto":
            get_loss(self.loss)
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.scheduler, SCHEDULERS, "scheduler")
        if self.batch < 1 or any(n is not None and n < 1 for n in (self.epochs, self.steps)):
            raise InputError("--batch, --epochs and --steps must be positive")
        if self.lr <= 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise InputError(f"--betas must be two numbers in [0, 1), got {self.betas}")
        if not self.eps > 0:
            raise InputError(f"--eps must be positive, got {self.eps}")

    def with_epochs(self, steps_per_epoch: int) -> TrainSettings:
        """These settings with the number of epochs decided.

        Parameters
        ----------
        steps_per_epoch : int
            Optimiser steps in one epoch.

        Returns
        -------
        TrainSettings
            ``epochs`` as given; else ``ceil(steps / steps_per_epoch)`` with
            ``steps``, or :data:`DEFAULT_EPOCHS` without.

        Examples
        --------
        >>> TrainSettings(steps=5000).with_epochs(100).epochs
        50
        >>> TrainSettings().with_epochs(100).epochs
        10
        """
        if self.epochs is not None:
            return self
        epochs = math.ceil(self.steps / steps_per_epoch) if self.steps else DEFAULT_EPOCHS
        return replace(self, epochs=epochs)

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` did."""

    epochs: int
    steps: int
    best_epoch: int
    best_loss: float
    stopped_early: bool
    history: list[dict[str, float]]


def _scheduler(settings: TrainSettings, optimizer: torch.optim.Optimizer) -> Any:
    if settings.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    if settings.scheduler == "exponential":
        after, gamma = settings.decay_after, settings.decay_gamma
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: gamma ** max(0, epoch - after + 1)
        )
    return None


def _optimizer(settings: TrainSettings, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("every parameter is frozen; nothing to train (check --freeze)")
    kind = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=settings.lr, weight_decay=settings.weight_decay,
                betas=tuple(settings.betas), eps=settings.eps)


class _Validation:
    """Accumulates the validation loss and metrics over batches."""

    def __init__(self, loss: Loss, data_range: float):
        self.loss, self.data_range = loss, data_range
        self.total = self.squared = self.ssim_sum = 0.0
        self.samples = self.voxels = self.ssim_samples = 0
        self.counts = {"tp": 0, "fp": 0, "fn": 0}

    def add(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Count one batch; voxels outside its ``mask`` count for no metric but SSIM."""
        target, mask = batch["target"], batch.get("mask")
        n = output.shape[0]
        self.total += float(self.loss.function(output, target, mask)) * n
        self.samples += n
        inside = torch.ones_like(target, dtype=torch.bool) if mask is None else (
            (mask > 0).expand_as(target))
        if self.loss.for_masks:
            for key, value in confusion((output > 0) & inside, (target > 0.5) & inside).items():
                self.counts[key] += value
            return
        self.squared += float(((output - target) ** 2)[inside].sum())
        self.voxels += int(inside.sum())
        if min(target.shape[2:]) >= 7:
            self.ssim_sum += ssim(output, target, data_range=self.data_range) * n
            self.ssim_samples += n

    def result(self) -> dict[str, float]:
        row = {"val_loss": self.total / self.samples}
        if self.loss.for_masks:
            row.update({f"val_{k}": v for k, v in mask_scores(self.counts).items()})
        else:
            mse = self.squared / max(self.voxels, 1)
            row.update({"val_mse": mse, "val_psnr": psnr_from_mse(mse, data_range=self.data_range)})
            if self.ssim_samples:
                row["val_ssim"] = self.ssim_sum / self.ssim_samples
        return row


class _Step:
    """One optimiser step: forward (autocast on CUDA), backward (scaled for fp16), clip, update."""

    def __init__(self, loss: Loss, optimizer: torch.optim.Optimizer, clip_grad: float | None,
                 device: torch.device, amp: bool):
        self.loss, self.optimizer, self.clip_grad = loss, optimizer, clip_grad
        self.device_type = device.type
        self.amp = amp and device.type == "cuda"
        self.dtype = (torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported()
                      else torch.float16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.amp):
            value = self.loss.function(model(batch["image"]), batch["target"], batch.get("mask"))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(value).backward()
        if self.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(value.detach())


def _loader(dataset: PatchSource, settings: TrainSettings, device: torch.device, epoch: int,
            *, drop_last: bool = False) -> torch.utils.data.DataLoader:
    dataset.set_epoch(epoch)
    workers = settings.workers
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if device.type == "cuda" else 0
    return torch.utils.data.DataLoader(
        dataset, batch_size=settings.batch, shuffle=False, num_workers=workers,
        drop_last=drop_last and len(dataset) >= settings.batch, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(settings.seed + epoch),
    )


def _batches(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches; an input error in a loader worker keeps its own one-line message.

    A DataLoader re-raises a worker's exception with the worker's traceback
    in its message; the error's own message is the traceback's last line.
    """
    try:
        yield from loader
    except VolumetricError as exc:
        last = str(exc).rstrip().splitlines()[-1]
        name = f"{type(exc).__module__}.{type(exc).__qualname__}: "
        if last.startswith(name):
            raise type(exc)(last[len(name):]) from None
        raise


def _progress(total: int, label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="patch", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False,
                mininterval=0.5 if sys.stderr.isatty() else 10.0)


def fit(
    model: nn.Module,
    train_set: PatchSource,
    val_set: PatchSource | None,
    spec: NetworkSpec,
    settings: TrainSettings,
    run_dir: str | Path,
    *,
    resume: bool = False,
    data_range: float = 1.0,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    meter: Callable[[], Meter] | None = None,
) -> FitResult:
    """Train ``model`` and write the run directory.

    Parameters
    ----------
    model : torch.nn.Module
        The network, outputting raw values (logits for mask losses); frozen
        parameters (``requires_grad=False``) stay unchanged.
    train_set, val_set : dataset
        Patch datasets with ``set_epoch``; items are dicts with ``image`` and
        ``target`` tensors. ``val_set`` may be None (no validation; the
        training loss then selects the best epoch).
    spec : NetworkSpec
        Architecture and metadata stored with the weights.
    settings : TrainSettings
        Optimisation settings.
    run_dir : str or Path
        Output folder (created; ``config.json`` is written by the caller).
    resume : bool
        Continue from ``run_dir/last.pt``.
    data_range : float
        Value span of the targets, for PSNR and SSIM (image losses).
    progress : bool
        Show a progress bar with the loss and patches/s.
    on_epoch : callable, optional
        Called with each epoch's metrics row.
    meter : callable, optional
        Makes the :class:`Meter` of a validation pass (default: the loss, and Dice/IoU
        for mask losses or MSE/PSNR/SSIM for the others).

    Returns
    -------
    FitResult
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = len(train_set) // settings.batch if len(train_set) >= settings.batch else 1
    settings = settings.with_epochs(steps_per_epoch)
    loss = get_loss(settings.loss)
    device = torch.device(resolve_device(settings.device))
    model.to(device)
    optimizer = _optimizer(settings, model)
    scheduler = _scheduler(settings, optimizer)
    train_step = _Step(loss, optimizer, settings.clip_grad, device, settings.amp)
    max_steps = settings.steps or steps_per_epoch * settings.epochs
    epochs = min(settings.epochs, math.ceil(max_steps / steps_per_epoch))

    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_loss": math.inf, "best_epoch": 0,
                             "stale_epochs": 0, "history": []}
    if resume and (run_dir / rundir.LAST).is_file():
        state = _restore(run_dir / rundir.LAST, model, optimizer, scheduler, train_step.scaler,
                         device)
        log.info("resuming %s after epoch %d", run_dir, state["epoch"])
    else:
        torch.manual_seed(settings.seed)
    stopped_early = settings.patience is not None and state["stale_epochs"] >= settings.patience
    example: torch.Tensor | None = None
    fit_started, drawing = time.perf_counter(), 0.0

    def more_epochs() -> bool:
        return state["epoch"] < epochs and state["step"] < max_steps and not stopped_early

    while more_epochs():
        epoch = state["epoch"]
        model.train()
        hold_frozen_norms(model)
        started, seen, running = time.perf_counter(), 0, 0.0
        todo = min(steps_per_epoch, max_steps - state["step"])
        bar = _progress(todo * settings.batch, f"epoch {epoch + 1}/{epochs}", progress)
        try:
            loader = _loader(train_set, settings, device, epoch, drop_last=True)
            for i, batch in enumerate(_batches(loader)):
                if i == todo:
                    break
                _check_targets(loss, batch["target"],
                               f"the target batch of epoch {epoch + 1} step {state['step'] + 1}")
                batch = _to_device(batch, device)
                image = batch["image"]
                if example is None:
                    example = image[:1].cpu()
                value = train_step(model, batch)
                state["step"] += 1
                _check_finite("training", value, f"epoch {epoch + 1} step {state['step']}")
                seen += image.shape[0]
                running += value * image.shape[0]
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                bar.update(image.shape[0])
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "step": state["step"], "lr": optimizer.param_groups[0]["lr"],
               "train_loss": running / max(seen, 1)}
        if scheduler is not None:
            scheduler.step()
        if val_set is not None:
            meter_now = meter() if meter is not None else _Validation(loss, data_range)
            row.update(_validate(model, val_set, loss, settings, device, meter_now))
        row.update({"seconds": seconds, "patches_per_s": seen / seconds if seconds else 0.0})
        state["epoch"] += 1
        state["history"].append(row)
        monitored = row.get("val_loss", row["train_loss"])
        _check_finite("validation", monitored, f"epoch {epoch + 1}")
        if monitored < state["best_loss"] - settings.min_delta:
            state.update(best_loss=monitored, best_epoch=epoch + 1, stale_epochs=0)
            _save_best(run_dir, model, spec, example, row)
        else:
            state["stale_epochs"] += 1
        stopped_early = settings.patience is not None and state["stale_epochs"] >= settings.patience
        _save_last(run_dir / rundir.LAST, model, spec, optimizer, scheduler, train_step.scaler,
                   state)
        rundir.write_metrics(run_dir, state["history"])
        if not more_epochs() or drawing <= CURVES_TIME_SHARE * (time.perf_counter() - fit_started):
            drawn = time.perf_counter()
            rundir.plot_curves(run_dir, state["history"])
            drawing += time.perf_counter() - drawn
        summary = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
        if progress:
            bar.write(f"epoch {epoch + 1}/{epochs}: {summary}", file=sys.stderr)
        log.info("epoch %d: %s", epoch + 1, summary)
        if on_epoch is not None:
            on_epoch(row)

    return FitResult(state["epoch"], state["step"], state["best_epoch"], state["best_loss"],
                     stopped_early, state["history"])


def _check_targets(loss: Loss, target: torch.Tensor, where: str) -> None:
    """Refuse a batch with target values the loss cannot take (the up-front check samples)."""
    if loss.target_range is not None:
        low, high = torch.aminmax(target)
        loss.check_target(float(low), float(high), where)


def _check_finite(kind: str, loss: float, when: str) -> None:
    """Stop a run whose loss is NaN or infinite; the checkpoints of earlier epochs stay.

    Raises
    ------
    InputError
        ``loss`` is not finite.
    """
    if not math.isfinite(loss):
        raise InputError(f"the {kind} loss became {loss} at {when}; lower --lr or check the "
                         "inputs")


def _validate(model: nn.Module, val_set: PatchSource, loss: Loss, settings: TrainSettings,
              device: torch.device, meter: Meter) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        for batch in _batches(_loader(val_set, settings, device, 0)):
            _check_targets(loss, batch["target"], "a validation target batch")
            batch = _to_device(batch, device)
            meter.add(model(batch["image"]).float(), batch)
    return meter.result()


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors (image, target, loss mask...) on ``device``."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _save_best(run_dir: Path, model: nn.Module, spec: NetworkSpec, example: torch.Tensor,
               row: dict[str, float]) -> None:
    rundir.save_state(run_dir / rundir.BEST, model, spec, inference=True, training={"metrics": row})
    scripted = to_torchscript(WithActivation(model, spec.output_activation), example)
    save_torchscript(scripted, run_dir / rundir.TORCHSCRIPT, spec.metadata())


def _save_last(path: Path, model: nn.Module, spec: NetworkSpec,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
               state: dict[str, Any]) -> None:
    training = {
        **state,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    rundir.save_state(path, model, spec, inference=False, training=training)


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: torch.amp.GradScaler, device: torch.device) -> dict[str, Any]:
    """Load ``last.pt`` into the live objects; returns the loop state."""
    payload = read_checkpoint(path, map_location=str(device))
    training = payload["training"]
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(training["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(training["scheduler"])
    if training["scaler"]:
        scaler.load_state_dict(training["scaler"])
    torch.set_rng_state(training["rng"].cpu())
    if training["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in training["cuda_rng"]])
    return {key: training[key] for key in
            ("epoch", "step", "best_loss", "best_epoch", "stale_epochs", "history")}
