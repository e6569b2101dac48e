"""``vol project``: maximum, mean, minimum or sum projections."""

from __future__ import annotations

import click

from volumetric_cli.options import run_options


@click.command()
@click.argument("src")
@click.argument("out")
@click.option("--axis", type=click.Choice(["z", "y", "x"]), default="z", show_default=True,
              help="The projected axis (kept in OUT with length 1).")
@click.option("--mode", type=click.Choice(["max", "mean", "min", "sum"]), default="max",
              show_default=True, help="The reduction.")
@click.option("--png", metavar="FILE", help="Also write a colour preview (first time point).")
@run_options(block_mb="Target size of one block task in MiB, whole chunks (default: 32).")
def project(src: str, out: str, axis, mode, png, run) -> None:
    """Project SRC along one axis, per channel and time point, into the OME-Zarr image OUT.

    A block-wise tree reduction: blocks are reduced to partials, partials are
    combined until one is left. The projected axis stays in OUT with length 1.

    \b
    Example:
      vol project frames.zarr mip.zarr --png mip.png
      vol project stack.zarr side.zarr --axis y --mode mean
    """
    from volumetric.ops.project import project as run_project

    report = run_project(src, out, axis=axis, mode=mode, png=png, run=run)
    click.echo(
        f"wrote {out}: {'x'.join(map(str, report.image.shape))} {report.image.array(0).dtype}, "
        f"{mode} along {axis}, {report.blocks} blocks in {report.levels} level(s), "
        f"{report.seconds:.1f} s" + (f"; preview {png}" if png else "")
    )
