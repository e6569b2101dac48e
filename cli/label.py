"""``vol label``: a finished mask becomes an NGFF label image of its image."""

from __future__ import annotations

import click

from volumetric_cli.options import run_options


@click.command()
@click.argument("mask")
@click.argument("image")
@click.option("--name", default=None, metavar="NAME",
              help="Label name, written to IMAGE/labels/NAME (default: MASK's file name).")
@run_options(block_mb="Target size of one block task in MiB, whole chunks (default: 16).")
def label(mask: str, image: str, name: str | None, run) -> None:
    """Copy MASK into IMAGE as the NGFF label image IMAGE/labels/NAME.

    MASK (integers or booleans) must have IMAGE's spatial axes and shape.
    The label gets one level per level of IMAGE (nearest-neighbour samples)
    and the image-label metadata that napari and other viewers use to show it
    over IMAGE. Only IMAGE's labels group is written, never its arrays; an
    existing label of that name needs --overwrite.

    \b
    Example:
      vol render neuron.swc --like brain.zarr neuron-mask.zarr
      vol label neuron-mask.zarr brain.zarr --name neuron
    """
    from volumetric.ops.label import label as run_label

    report = run_label(mask, image, name, run=run)
    click.echo(f"wrote {report.image.path}: {len(report.image.levels)} levels, "
               f"{report.voxels} labelled voxels in {report.blocks} blocks, "
               f"{report.seconds:.1f} s")
