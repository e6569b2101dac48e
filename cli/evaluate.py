"""``vol evaluate``: score a prediction against ground truth."""

from __future__ import annotations

import click

from volumetric_cli.options import run_options


@click.command()
@click.argument("pred")
@click.argument("truth")
@click.option("--threshold", type=float, default=None,
              help="Binarise PRED (> T) and report Dice, IoU, precision, recall.")
@click.option("--below", is_flag=True, help="Foreground is PRED < T (distance maps).")
@click.option("--channel", type=click.IntRange(min=0), default=0, show_default=True,
              help="Channel of PRED to score.")
@click.option("--cubes", type=click.Path(), default=None,
              help="Cube list from `vol discover`: score only inside its cubes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@run_options(overwrite=False)
def evaluate(pred: str, truth: str, threshold, below, channel, cubes, as_json, run) -> None:
    """Score PRED against TRUTH block by block (same spatial shape).

    With --threshold: Dice, IoU, precision and recall of the binarised
    prediction against TRUTH's nonzero voxels. Without: MSE and PSNR.

    \b
    Example:
      vol evaluate pred.zarr mask.zarr --threshold 0.5
      vol evaluate distance_pred.zarr mask.zarr --threshold 1 --below --cubes cubes.json
      vol evaluate fluo_pred.zarr fluo.zarr --json
    """
    import json

    from volumetric.ops.evaluate import evaluate as run_evaluate

    scores = run_evaluate(pred, truth, threshold=threshold, below=below, channel=channel,
                          cubes=cubes, run=run)
    if as_json:
        click.echo(json.dumps(scores))
    else:
        click.echo("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in scores.items()))
