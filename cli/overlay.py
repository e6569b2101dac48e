"""``vol overlay``: the lab's Vaa3D overlay of a predicted distance map on the raw volume."""

from __future__ import annotations

import click
from volumetric_cli.options import run_options


@click.command()
@click.argument("raw")
@click.argument("pred")
@click.argument("out")
@click.option("--clip", type=float, default=None,
              help="Clip distances to [0, D] (default: the prediction's 99.8th percentile).")
@click.option("--power", type=float, default=1.0, show_default=True,
              help="Exponent of the normalised distance.")
@click.option("--channel", type=click.IntRange(min=0), default=0, show_default=True,
              help="Prediction channel to overlay.")
@click.option("--rgb", is_flag=True, help="Write RGB (prediction in red) instead of grey.")
@run_options()
def overlay(raw: str, pred: str, out: str, clip, power, channel, rgb, run) -> None:
    """Overlay the predicted distance map PRED on RAW for Vaa3D, as uint16 OUT.

    The distance map is clipped to [0, D], divided by D, raised to --power and
    added to the percentile-normalised raw; the sum is rescaled to 0..65535
    (grey), or the prediction is added to the red channel only (--rgb).

    \b
    Example:
      vol overlay brain.zarr pred.zarr overlay.zarr --clip 6 --power 2
    """
    from volumetric.ops.overlay import overlay as run_overlay

    report = run_overlay(raw, pred, out, clip=clip, power=power, channel=channel, rgb=rgb,
                         run=run)
    click.echo(f"wrote {out}: {report.image.meta.axes} "
               f"{'x'.join(map(str, report.image.shape))} uint16 (clip {report.clip:g}) "
               f"in {report.seconds:.1f} s")
