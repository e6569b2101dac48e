"""``vol train``: train a U-Net (or any torch module) on patches of OME-Zarr volumes."""

from __future__ import annotations

import json
from typing import Any

import click

from volumetric_cli.options import augment_options, float_tuple, int_tuple, sampler_options


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict:
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("give a JSON object, e.g. '{\"dropout\": 0.1}'")
    return parsed


def _pairs(ctx: click.Context, param: click.Parameter,
           value: tuple[str, ...] | str | None) -> Any:
    if value is None:
        return None
    pairs = []
    for text in (value,) if isinstance(value, str) else value:
        paths = text.split(",")
        if len(paths) not in (2, 3) or not all(paths):
            raise click.BadParameter(f"{text!r}: give RAW,TARGET or RAW,TARGET,MASK")
        pairs.append((paths[0], paths[1], paths[2] if len(paths) == 3 else None))
    return pairs[0] if isinstance(value, str) else tuple(pairs)


@click.command()
@click.argument("raw")
@click.argument("target")
@click.option("--out", "run_dir", required=True, metavar="RUN_DIR",
              help="Run directory: config.json, metrics.csv, curves.png, model.pt, model.ts.")
@click.option("--pair", "pairs", multiple=True, callback=_pairs, metavar="RAW,TARGET[,MASK]",
              help="Another training volume with its target (and loss mask when --mask is "
                   "given), sampled together with RAW TARGET; repeatable.")
@click.option("--model", "model_name", metavar="NAME",
              help="unet2d, unet3d, attention-resunet (attention-resunet2d/3d fix the dims), or "
                   "module:factory (default: unet2d/unet3d by the patch, or the --init "
                   "checkpoint's).")
@click.option("--depth", type=click.IntRange(min=1), help="U-Net downsamplings (default 3).")
@click.option("--features", type=click.IntRange(min=1),
              help="U-Net channels of the first level (default 16).")
@click.option("--norm", type=click.Choice(["batch", "instance", "none"]),
              help="U-Net normalisation (default batch).")
@click.option("--model-config", callback=_json_object, metavar="JSON",
              help="More factory arguments, e.g. "
                   "'{\"dropout\": 0.1, \"activation\": \"leakyrelu\"}'.")
@click.option("--patch", callback=int_tuple, metavar="Z,Y,X",
              help="Patch shape; 1,Y,X for 2D patches, drawn from every plane of every time "
                   "point (default: 64^3, or 1,256,256 for 2D images).")
@click.option("--t", "t", metavar="TIMES",
              help="Time points to sample in images with a t axis: 0:10 (0 to 9, end "
                   "excluded), 3, or a list 0,4,7 (default: every one).")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True,
              help="Patches per step.")
@click.option("--steps", type=click.IntRange(min=1),
              help="Total optimiser steps (instead of --epochs).")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs  [default: 10]")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--loss", default="auto", show_default=True,
              help="mse, bce, dice, log-dice, bce-dice, cldice. auto: bce-dice for mask and label "
                   "targets (binarised), else mse (distance maps, images and any float target, "
                   "also within [0, 1]). A label image is refused for mse.")
@click.option("--target", "target_kind", default="auto", show_default=True,
              type=click.Choice(["auto", "mask", "labels", "distance", "image"]),
              help="What TARGET is. auto (printed): integer targets with more than two values, "
                   "0 among them, are labels (one id per object); with at most two values "
                   "(0/1, 0/255) masks; a map from `vol distance` is distance; anything else "
                   "(float, integer without 0) an image. Masks and labels are binarised with "
                   "--foreground.")
@click.option("--target-normalize", type=click.Choice(["percentile", "zscore", "none"]),
              help="Normalisation of image and distance targets (default: percentile for "
                   "images, none for distance maps and with a mask loss); its statistics are "
                   "stored in the model, so `vol predict` writes the target's units.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default="adamw",
              show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--scheduler", type=click.Choice(["none", "cosine", "exponential"]), default="none",
              show_default=True, help="cosine annealing over the epochs, or exponential decay.")
@click.option("--decay-after", type=click.IntRange(min=0), default=10, show_default=True,
              help="Epochs at the full --lr before exponential decay starts.")
@click.option("--decay-gamma", type=click.FloatRange(0, 1, min_open=True), default=0.9,
              show_default=True, help="Factor per epoch of exponential decay.")
@click.option("--patience", type=click.IntRange(min=1),
              help="Early stopping after N epochs without improvement.")
@click.option("--clip-grad", type=click.FloatRange(min=0, min_open=True),
              help="Clip the gradient norm.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option("--mask", help="Loss mask image (OME-Zarr; nonzero voxels count).")
@click.option("--cubes", metavar="FILE",
              help="Cube list of RAW from `vol discover`: sample RAW only there.")
@click.option("--pair-cubes", "pair_cubes", multiple=True, metavar="FILE",
              callback=lambda ctx, param, value: tuple(None if v == "-" else v for v in value),
              help="Cube list of a --pair volume, in the order of the --pair options "
                   "('-' for none); repeatable.")
@sampler_options
@augment_options
@click.option("--normalize", type=click.Choice(["percentile", "zscore", "none"]),
              default="percentile", show_default=True, help="Raw intensity normalisation.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True,
              help="Share kept for validation (see --val-split; 0: no validation).")
@click.option("--val-split", type=click.Choice(["auto", "fraction", "planes", "t", "volume"]),
              default="auto", show_default=True,
              help="Validation keeps the last --val-fraction of: the longest axis of each volume "
                   "(fraction), its planes, its time points, or the volumes (volume: the last "
                   "--pair ones). auto: planes for 2D patches of z-stacks, t for 2D patches of "
                   "time series, else fraction.")
@click.option("--val", "val", callback=_pairs, metavar="RAW,TARGET[,MASK]",
              help="Validate on this volume instead of a split (same channels and dims).")
@click.option("--val-patches", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(min=0),
              help="DataLoader worker processes (default: 0 on CPU, up to 4 on CUDA).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last epoch.")
@click.option("--init", metavar="CKPT", help="Start from the weights of a checkpoint (model.pt).")
@click.option("--freeze", default="none", show_default=True, metavar="WHAT",
              help="last-N (or all-but-last-N): train only the last N layers with weights "
                   "(convolutions, transposed convolutions, linear; norms go with the layer they "
                   "follow) in forward order; encoder, decoder, or module names to freeze "
                   "(comma-separated, e.g. encoder,decoder.0); none. The run prints and "
                   "config.json lists which layers train.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--betas", callback=float_tuple, metavar="B1,B2", default="0.9,0.999",
              show_default=True, help="Adam/AdamW decay rates of the gradient's mean and square.")
@click.option("--eps", type=click.FloatRange(min=0, min_open=True), default=1e-8,
              show_default=True, help="Adam/AdamW denominator term.")
def train(raw: str, target: str, run_dir: str, pairs, model_name, depth, features, norm,
          model_config, patch, batch, steps, epochs, steps_per_epoch, loss, target_kind,
          target_normalize, lr, optimizer,
          weight_decay, scheduler, decay_after, decay_gamma, patience, clip_grad, amp, mask, cubes, pair_cubes,
          sampler, foreground_probability, foreground, augment, augment_off, augmentation,
          normalize, t, val_fraction, val_split, val, val_patches, workers, seed, resume, init,
          freeze, device, betas, eps) -> None:
    """Train a network on patches of RAW with TARGET (mask, distance map or image).

    Patches are read lazily from the OME-Zarr volumes. RUN_DIR receives
    config.json, metrics.csv, curves.png, model.pt (best epoch) and model.ts
    (TorchScript for `vol predict --model RUN_DIR/model.ts`). Interrupted,
    the same command with --resume continues exactly where it stopped.

    \b
    Example:
      vol train raw.zarr distance.zarr --out run --patch 32,64,64 --loss mse --epochs 20
      vol train raw.zarr mask.zarr --out run2 --model attention-resunet --loss cldice
      vol train a.zarr a_mask.zarr --pair b.zarr,b_mask.zarr --out both --patch 32,64,64
      vol train raw2.zarr mask2.zarr --out tuned --init run2/model.pt --freeze last-4
    """
    from volumetric.errors import InputError
    from volumetric.ops.train import DataSettings, ModelChoice
    from volumetric.ops.train import train as run_train
    from volumetric.train import TrainSettings

    if steps is not None and epochs is not None:
        raise InputError("give --steps or --epochs, not both")
    builtin = {"depth": depth, "features": features, "norm": norm}
    config = {**{k: v for k, v in builtin.items() if v is not None}, **model_config}
    data = DataSettings(
        raw, target, mask=mask, pairs=pairs, patch=patch, sampler=sampler,
        foreground_probability=foreground_probability, foreground=foreground,
        target_kind=target_kind, target_normalize=target_normalize, augment=augment,
        augment_off=augment_off, normalize=normalize, cubes=cubes, pair_cubes=pair_cubes, t=t,
        val_split=val_split, val=val, val_fraction=val_fraction, val_patches=val_patches,
        steps_per_epoch=steps_per_epoch, augmentation=augmentation,
    )
    settings = TrainSettings(
        loss=loss, optimizer=optimizer, lr=lr, weight_decay=weight_decay, batch=batch,
        epochs=epochs, steps=steps, scheduler=scheduler, decay_after=decay_after,
        decay_gamma=decay_gamma, patience=patience, clip_grad=clip_grad, amp=amp, device=device,
        workers=workers, seed=seed, betas=betas, eps=eps,
    )
    choice = ModelChoice(model_name, config, init, freeze)
    report = run_train(data, run_dir, model=choice, settings=settings, resume=resume)
    result = report.result
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    monitored = "val_loss" if "val_loss" in best else "train_loss"
    stop = ", stopped early" if result.stopped_early else ""
    click.echo(
        f"trained {report.architecture}: {result.epochs} epochs, {result.steps} steps in "
        f"{report.seconds:.0f} s{stop}; best epoch {result.best_epoch} "
        f"({monitored} {best.get(monitored, float('nan')):.4g}); wrote {run_dir}/model.pt and "
        f"{run_dir}/model.ts"
    )
