"""``vol evaluate``: score a prediction against ground truth."""

from __future__ import annotations

from typing import Any

import click

from volumetric_cli.options import run_options


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(scores: dict[str, Any]) -> str:
    """A short readable summary of the scores."""
    if "mse" in scores:
        lines = [f"voxels {scores['voxels']}",
                 f"mse {_number(scores['mse'])}  psnr {_number(scores['psnr'])} dB  "
                 f"ssim {_number(scores['ssim'])} (window {scores['ssim_window']})",
                 f"data range {_number(scores['data_range'])} ({scores['data_range_from']})"]
        return "\n".join(lines)
    o = scores["objects"]
    return "\n".join([
        f"voxels     dice {_number(scores['dice'])}  iou {_number(scores['iou'])}  precision "
        f"{_number(scores['precision'])}  recall {_number(scores['recall'])}  "
        f"(tp {scores['tp']}, fp {scores['fp']}, fn {scores['fn']} of {scores['voxels']})",
        f"objects    {o['matched']} of {o['truth']} truth objects matched, "
        f"{o['predicted']} predicted (IoU >= {o['iou_threshold']:g})",
        f"           precision {_number(o['precision'])}  recall {_number(o['recall'])}  "
        f"f1 {_number(o['f1'])}  mean matched IoU {_number(o['mean_matched_iou'])}",
        f"           splits {o['splits']}  merges {o['merges']}  "
        f"(truth: {o['truth_kind']}, connectivity {o['connectivity']}, "
        f"min size {o['min_size']})",
    ])


@click.command()
@click.argument("pred")
@click.argument("truth")
@click.option("--threshold", type=float, default=None,
              help="Binarise PRED (> T): voxel Dice, IoU, precision, recall and object scores.")
@click.option("--below", is_flag=True, help="Foreground is PRED < T (distance maps).")
@click.option("--channel", type=click.IntRange(min=0), default=0, show_default=True,
              help="Channel of PRED to score.")
@click.option("--iou", type=float, default=0.5, show_default=True,
              help="Least IoU of a matched truth/predicted object pair, in (0, 1].")
@click.option("--connectivity", type=int, default=6, show_default=True,
              help="6, 18 or 26: neighbours joining an object (4 or 8 on a single plane).")
@click.option("--min-size", type=int, default=0, show_default=True,
              help="Drop objects (truth or predicted) smaller than this many voxels.")
@click.option("--data-range", type=float, default=None,
              help="Data range of PSNR and SSIM (default: TRUTH's max - min).")
@click.option("--win-size", type=int, default=7, show_default=True,
              help="SSIM window side (odd, uniform as skimage's default).")
@click.option("--cubes", type=click.Path(), default=None,
              help="Cube list from `vol discover`: score only inside its cubes.")
@click.option("--per-object", type=click.Path(), default=None,
              help="Write one CSV row per truth object (id, size, centroid, best IoU, matched).")
@click.option("--t", "t", type=click.IntRange(min=0), default=None,
              help="Time point scored when PRED or TRUTH holds several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@run_options(overwrite=True,
             block_mb="Target block size in MiB (default 16); --overwrite applies to "
                      "--per-object.")
def evaluate(pred: str, truth: str, threshold, below, channel, iou, connectivity, min_size,
             data_range, win_size, cubes, per_object, t, as_json, run) -> None:
    """Score PRED against TRUTH block by block (same spatial shape; axes of length 1 aside).

    With --threshold: voxel Dice, IoU, precision and recall of the binarised
    prediction against TRUTH's nonzero voxels, and objects: connected
    components of both (or TRUTH's ids when it is an instance label image,
    i.e. holds more than two values) matched by IoU. Without: MSE, PSNR and
    SSIM. With --cubes, objects are those inside the listed cubes.

    \b
    Example:
      vol evaluate pred.zarr mask.zarr --threshold 0.5 --per-object objects.csv
      vol evaluate distance_pred.zarr mask.zarr --threshold 1 --below --cubes cubes.json
      vol evaluate fluo_pred.zarr fluo.zarr --data-range 4095 --json
    """
    import json

    from volumetric.ops.evaluate import evaluate as run_evaluate

    scores = run_evaluate(pred, truth, threshold=threshold, below=below, channel=channel,
                          iou=iou, connectivity=connectivity, min_size=min_size,
                          data_range=data_range, win_size=win_size, cubes=cubes,
                          per_object=per_object, t=t, run=run)
    click.echo(json.dumps(scores) if as_json else _table(scores))
