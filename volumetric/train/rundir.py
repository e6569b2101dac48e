"""The files of a training run directory.

==============  ==============================================================
``config.json`` everything that defines the run (data, model, optimisation)
``metrics.csv`` one row per epoch: losses, validation metrics, lr, throughput
``curves.png``  loss curves and one panel per validation metric, drawn after the
                first and last epochs and, in between, while drawing takes at
                most 5 % of the run's time
``model.pt``    checkpoint of the best epoch (lowest validation loss, or
                training loss without validation), inference-ready
``model.ts``    the same network as TorchScript, for ``vol predict``
``last.pt``     checkpoint of the latest epoch with the optimiser, scheduler
                and random state, read by ``--resume``
==============  ==============================================================
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volumetric.models.checkpoint import save_checkpoint
from volumetric.models.factory import is_custom

CONFIG = "config.json"
METRICS = "metrics.csv"
CURVES = "curves.png"
BEST = "model.pt"
TORCHSCRIPT = "model.ts"
LAST = "last.pt"


@dataclass(frozen=True)
class NetworkSpec:
    """A trained network's architecture and channels: what a checkpoint needs besides weights.

    ``config`` is the factory configuration of the trained network (raw
    outputs); ``output_activation`` is what inference adds (see
    :mod:`volumetric.train.losses`); ``patch`` the training patch shape
    (a natural inference window); ``target`` what the network learned from
    its target (:meth:`volumetric.train.targets.TargetTransform.metadata`),
    so that inference can write predictions in the target's units.
    """

    architecture: str
    config: dict[str, Any]
    spatial_dims: int
    in_channels: int
    out_channels: int
    output_activation: str = "none"
    preprocess: dict[str, Any] = field(default_factory=dict)
    patch: tuple[int, ...] | None = None
    target: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The JSON stored inside ``model.ts``."""
        return {
            "format": "volumetric-torchscript",
            "architecture": self.architecture,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "output_activation": self.output_activation,
            "preprocess": self.preprocess,
            "patch": list(self.patch) if self.patch else None,
            "target": self.target,
        }


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json``."""
    (run_dir / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``config.json``, or None where there is none."""
    path = run_dir / CONFIG
    return json.loads(path.read_text()) if path.is_file() else None


def save_state(path: Path, model: Any, spec: NetworkSpec, *, inference: bool,
               training: dict[str, Any]) -> None:
    """Write a checkpoint of ``model``.

    With ``inference`` the stored config of a built-in architecture carries
    the output activation, so
    :func:`volumetric.models.checkpoint.model_from_checkpoint` rebuilds a
    network that outputs probabilities for mask losses.
    """
    config = dict(spec.config)
    if inference and not is_custom(spec.architecture):
        config["output_activation"] = spec.output_activation
    save_checkpoint(
        path, model, architecture=spec.architecture, model_config=config,
        spatial_dims=spec.spatial_dims, in_channels=spec.in_channels,
        out_channels=spec.out_channels, preprocess=spec.preprocess, target=spec.target,
        training={"output_activation": spec.output_activation,
                  "patch": list(spec.patch) if spec.patch else None, **training},
    )


def write_metrics(run_dir: Path, history: Sequence[dict[str, float]]) -> None:
    """Rewrite ``metrics.csv`` from the per-epoch rows."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    tmp = run_dir / f".{METRICS}.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(run_dir / METRICS)


def curves_figure(history: Sequence[dict[str, float]]) -> Any:
    """A matplotlib figure of the losses and of each validation metric per epoch.

    One panel shows the training and validation losses; every validation
    metric (Dice, IoU, ... or MSE, PSNR, SSIM) gets its own panel and scale.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    metrics = [k for k in history[0] if k.startswith("val_") and k != "val_loss"]
    fig = Figure(figsize=(3.2 * (1 + len(metrics)), 3.2), layout="constrained")
    loss_ax, *metric_axes = fig.subplots(1, 1 + len(metrics), squeeze=False)[0]
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            loss_ax.plot(epochs, [row[key] for row in history], marker=".", label=key)
    loss_ax.set(xlabel="epoch", title="loss")
    loss_ax.legend()
    for ax, key in zip(metric_axes, metrics):
        ax.plot(epochs, [row[key] for row in history], marker=".", color="tab:green")
        ax.set(xlabel="epoch", title=f"validation {key[4:]}",
               ylabel="dB" if key.endswith("psnr") else "")
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_curves(run_dir: Path, history: Sequence[dict[str, float]]) -> None:
    """Draw :func:`curves_figure` to ``curves.png``.

    The figure is drawn without pyplot, so the caller's matplotlib backend
    (e.g. a notebook's inline one) stays as it is.
    """
    tmp = run_dir / f".{CURVES}.tmp.png"
    curves_figure(history).savefig(tmp, dpi=100)
    tmp.replace(run_dir / CURVES)
