"""``vol patches``: a PNG gallery of training patches with their augmented targets."""

from __future__ import annotations

import click

from volumetric_cli.options import augment_options, int_tuple, sampler_options


@click.command()
@click.argument("raw")
@click.argument("target")
@click.argument("out")
@click.option("--mask", default=None, help="Loss mask image (OME-Zarr).")
@click.option("--patch", callback=int_tuple, metavar="Z,Y,X", default=None,
              help="Patch shape; 1,Y,X for 2D patches (default: 64^3, or 1,256,256 for 2D images).")
@click.option("--n", "n", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of patches.")
@sampler_options
@augment_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cubes", default=None, metavar="FILE", help="Cube list from `vol discover`.")
@click.option("--t", "t", type=click.IntRange(min=0), default=0, help="Time point.")
@click.option("--channel", type=click.IntRange(min=0), default=None, help="Raw channel.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
def patches(raw: str, target: str, out: str, mask: str | None, patch: tuple[int, ...] | None,
            n: int, sampler: str, foreground_probability: float, foreground: str, augment: bool,
            augment_off: tuple[str, ...], augmentation, seed: int, cubes: str | None, t: int,
            channel: int | None, overwrite: bool) -> None:
    """Save N training patches of RAW with their TARGET as the PNG gallery OUT.

    Patches come from the training PatchDataset with the training augmentation
    (middle z slice of 3D patches; the image with the target overlaid, and the
    target alone, titled with location and augmentations).

    \b
    Example:
      vol patches raw.zarr mask.zarr check.png --patch 32,64,64 --sampler foreground
      vol patches raw.zarr distance.zarr check.png --patch 1,256,256 --foreground '<5'
    """
    from volumetric.ops.patches import patch_gallery

    report = patch_gallery(raw, target, out, mask=mask, patch=patch, n=n, sampler=sampler,
                           foreground_probability=foreground_probability, foreground=foreground,
                           augment=augment, augment_off=augment_off, augmentation=augmentation,
                           seed=seed, cubes=cubes,
                           t=t, channel=channel, overwrite=overwrite)
    click.echo(f"wrote {report['path']}: {report['samples']} patches of {report['patch']}")
