"""``vol distance``: exact Euclidean distance maps of a binary mask."""

from __future__ import annotations

import click

from volumetric_cli.options import levels_option, run_options


@click.command()
@click.argument("mask")
@click.argument("out")
@click.option("--clip", type=float, metavar="D",
              help="Clip at this physical distance (block-wise with a halo of ceil(D/voxel)).")
@click.option("--signed", is_flag=True, help="Negative distances inside the mask.")
@click.option("--invert", is_flag=True, help="Distance to the background instead.")
@click.option("--power", type=float, metavar="P", help="Raise distances to P after clipping.")
@click.option("--normalize", is_flag=True,
              help="Divide by D**P after clipping (values within [-1, 1]).")
@levels_option("mean")
@run_options(block_mb="Target size of one block task in MiB, whole chunks (default: 64, clipped "
                      "and per pass unclipped).")
def distance(mask: str, out: str, clip, signed, invert, power, normalize, levels, run) -> None:
    """Distance from every voxel of MASK to its nearest nonzero voxel, written to OUT (float32).

    Distances are physical (the voxel size, anisotropic) and exact. The volume's
    outer faces are not background: only voxels inside the volume count. Without
    --clip the unclipped map is computed out of core in one pass per axis.

    \b
    Example:
      vol distance neurons.zarr dist.zarr --clip 10 --levels 3
      vol distance neurons.zarr target.zarr --clip 10 --invert --power 0.5 --normalize
    """
    from volumetric.ops.distance import distance as run_distance

    report = run_distance(mask, out, clip=clip, signed=signed, invert=invert, power=power,
                          scale_to_clip=normalize, levels=levels, run=run)
    click.echo(
        f"wrote {out}: {'x'.join(map(str, report.image.shape))} float32, {report.blocks} blocks "
        f"({report.blocks_written} written), {report.seconds:.1f} s"
    )
