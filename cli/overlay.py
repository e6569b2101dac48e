"""``vol overlay``: the raw volume brightened where the prediction finds the structure."""

from __future__ import annotations

import click
from volumetric_cli.options import levels_option, run_options


@click.command()
@click.argument("raw")
@click.argument("pred")
@click.argument("out")
@click.option("--kind", type=click.Choice(["distance", "probability"]), default=None,
              help="What PRED holds (default: what vol predict or vol distance recorded in "
                   "it, else distance).")
@click.option("--clip", type=float, default=None,
              help="Distance D at which the weight reaches 0 (default: the prediction's "
                   "99.8th percentile). Distances only.")
@click.option("--power", type=float, default=1.0, show_default=True,
              help="Exponent of the distance weight (1 - min(d, D) / D); above 1 it "
                   "concentrates near the structure. Distances only.")
@click.option("--weight", type=float, default=1.0, show_default=True,
              help="Factor of the structure weight added to the normalised raw.")
@click.option("--channel", type=click.IntRange(min=0), default=0, show_default=True,
              help="Prediction channel to overlay.")
@click.option("--rgb", is_flag=True,
              help="Write RGB: the raw in grey, the structure weight added to --color.")
@click.option("--color", "colour", type=click.Choice(["red", "green", "blue"]),
              default="green", show_default=True, help="The structure's channel with --rgb.")
@levels_option("mean")
@run_options(block_mb="Target size of one block task in MiB, whole chunks (default: 16).")
def overlay(raw: str, pred: str, out: str, kind, clip, power, weight, channel, rgb, colour,
            levels, run) -> None:
    """Overlay the prediction PRED on RAW, brightest near the structure, as the OME-Zarr OUT.

    Each voxel gets a structure weight: (1 - min(d, D) / D) ** --power for a
    distance map (1 on the structure, 0 from D away), the probability itself
    for a mask model (--kind probability). The weight times --weight is added
    to the percentile-normalised raw and the sum is scaled so that its
    maximum is 65535 (uint16). With --rgb the raw is grey and the weight is
    added to the --color channel only.

    OUT is an OME-Zarr image (napari, neuroglancer). Vaa3D and Fiji open the
    file that vol export makes of it:

    \b
      vol export OUT.zarr OUT.v3draw    # or OUT.tif

    \b
    Example:
      vol distance mask.zarr dist.zarr --clip 6
      vol overlay brain.zarr dist.zarr overlay.zarr --clip 6 --power 2
      vol export overlay.zarr overlay.v3draw
    """
    from volumetric.ops.overlay import overlay as run_overlay

    report = run_overlay(raw, pred, out, kind=kind, clip=clip, power=power, weight=weight,
                         channel=channel, rgb=rgb, colour=colour, levels=levels,
                         run=run)
    shaped = f", clip {report.clip:g}, power {power:g}" if report.kind == "distance" else ""
    click.echo(f"wrote {out}: {report.image.meta.axes} "
               f"{'x'.join(map(str, report.image.shape))} uint16 ({report.kind}{shaped}) "
               f"in {report.seconds:.1f} s")
