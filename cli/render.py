"""``vol render``: SWC traces to a binary mask on an image's voxel grid."""

from __future__ import annotations

import click

from volumetric_cli.options import levels_option, run_options


@click.command()
@click.argument("swc")
@click.option("--like", "like", required=True, metavar="RAW",
              help="Reference image: the mask gets its spatial shape, chunks and voxel size.")
@click.argument("out")
@levels_option("nearest downsampling (every level stays 0/1)")
@run_options(block_mb="Target size of one block task in MiB, whole chunks (default: 16).")
def render(swc: str, like: str, out: str, levels, run) -> None:
    """Render the traced neurons in SWC into a binary mask OUT aligned with RAW (--like).

    SWC coordinates and radii are physical, in RAW's unit; segments become
    tubes whose radius varies between the node radii. Only blocks that a
    segment touches are computed.

    \b
    Example:
      vol render neuron.swc --like brain.zarr neuron-mask.zarr
    """
    from volumetric.ops.render import render as run_render

    report = run_render(swc, like, out, levels=levels, run=run)
    click.echo(
        f"wrote {out}: {'x'.join(map(str, report.image.shape))} uint8, {report.voxels} voxels "
        f"set in {report.blocks} blocks, {report.seconds:.1f} s"
    )
