"""``vol train-matcher``: train a geometric matcher (affine or TPS) for learned alignment."""

from __future__ import annotations

import click

from volumetric_cli.options import int_tuple


def _channels(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    try:
        channels = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give channel numbers like 0,1") from None
    if any(c < 0 for c in channels):
        raise click.BadParameter(f"{value!r}: channel numbers start at 0")
    return channels


def _size(ctx: click.Context, param: click.Parameter, value: str):
    size = int_tuple(ctx, param, value)
    if len(size) not in (1, 2):
        raise click.BadParameter(f"{value!r}: give SIDE or H,W")
    return size * 2 if len(size) == 1 else size


@click.command("train-matcher")
@click.argument("frames")
@click.option("--model", type=click.Choice(["affine", "tps"]), default="affine",
              show_default=True, help="Transformation predicted: affine (6 parameters) or thin-"
                                      "plate spline on 3x3 control points (18).")
@click.option("--out", "run_dir", required=True, metavar="RUN_DIR",
              help="Run directory: config.json, metrics.csv, curves.png, model.pt.")
@click.option("--channels", callback=_channels, metavar="C[,C...]",
              help="Channels the matcher sees (default: all); landmarks come from the first.")
@click.option("--size", callback=_size, default="240", show_default=True, metavar="SIDE|H,W",
              help="Input of the matcher; frames' projections are resized to it.")
@click.option("--augment", default="shear,rotate,distort,zoom,noise", show_default=True,
              metavar="NAMES", help="Warps drawn from, 2 to 4 per pair: shear, rotate, distort "
                                    "(piecewise), zoom (with translation), noise. E.g. "
                                    "distort,noise for a TPS matcher after an affine one.")
@click.option("--pairs-per-frame", type=click.IntRange(min=1), default=10, show_default=True,
              help="Warped training pairs per training frame and epoch.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True, help="Share of the frames, the last ones, for validation.")
@click.option("--val-pairs", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--features", type=click.IntRange(min=1), default=16, show_default=True,
              help="Channels of the feature extractor's first stage.")
@click.option("--depth", type=click.IntRange(min=1), default=4, show_default=True,
              help="Stages (2x downsamplings) of the feature extractor.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Dropout before the regression's linear layer.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="Total optimiser steps.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs  [default: 10]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-4,
              show_default=True)
@click.option("--scheduler", type=click.Choice(["none", "cosine", "exponential"]),
              default="none", show_default=True)
@click.option("--patience", type=click.IntRange(min=1),
              help="Early stopping after N epochs without improvement.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option("--workers", type=click.IntRange(min=0),
              help="DataLoader worker processes (default: 0 on CPU, up to 4 on CUDA).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last epoch.")
def train_matcher(frames: str, model: str, run_dir: str, channels, size, augment, pairs_per_frame,
                  val_fraction, val_pairs, features, depth, dropout, batch, steps, epochs, lr,
                  scheduler, patience, device, amp, workers, seed, resume) -> None:
    """Train a matcher that aligns the frames of the time series FRAMES.

    Training pairs are made on the fly: a frame's maximum projection along z
    and a copy warped by 2 to 4 random shears, rotations, piecewise
    distortions, zooms and noise, the warp known. Validation pairs from the
    last frames are scored by the grid loss and by landmark errors in pixels
    (mean, 90th percentile, PCK@0.05) in metrics.csv and curves.png.

    \b
    Example:
      vol train-matcher worm.zarr --model affine --out m_affine --steps 2000
      vol train-matcher worm.zarr --model tps --out m_tps --steps 2000
      vol align worm.zarr aligned.zarr --method learned --matcher m_affine,m_tps
    """
    from volumetric.errors import InputError
    from volumetric.ops.train_matcher import DEFAULT_SETTINGS, MatcherData
    from volumetric.ops.train_matcher import train_matcher as run
    from volumetric.train import TrainSettings

    if steps is not None and epochs is not None:
        raise InputError("give --steps or --epochs, not both")
    data = MatcherData(frames, channels=channels, size=size, pairs_per_frame=pairs_per_frame,
                       val_fraction=val_fraction, val_pairs=val_pairs,
                       augmentations=tuple(a.strip() for a in augment.split(",") if a.strip()))
    settings = TrainSettings(
        loss="grid", optimizer=DEFAULT_SETTINGS.optimizer, lr=lr, batch=batch, steps=steps,
        epochs=epochs, scheduler=scheduler, patience=patience, amp=amp, device=device,
        workers=workers, seed=seed,
    )
    report = run(data, run_dir, model=model, settings=settings, resume=resume,
                 config={"features": features, "depth": depth, "dropout": dropout})
    result = report.result
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    scores = ", ".join(f"{key[4:]} {best[key]:.3g}" for key in
                       ("val_loss", "val_landmark_px", "val_pck") if key in best)
    click.echo(
        f"trained {model} matcher: {result.epochs} epochs, {result.steps} steps in "
        f"{report.seconds:.0f} s; best epoch {result.best_epoch} ({scores or 'no validation'}); "
        f"wrote {run_dir}/model.pt"
    )
