"""``vol export``: an OME-Zarr image to TIFF (Fiji), v3draw (Vaa3D), MP4/GIF or a PNG preview."""

from __future__ import annotations

import click


@click.command()
@click.argument("src")
@click.argument("out")
@click.option("--region", metavar="RANGES",
              help="Index ranges of the chosen level, AXIS=START:STOP separated by commas "
                   "(STOP exclusive, either bound may be left out, AXIS=N for one index), "
                   "e.g. z=10:50,y=0:256.")
@click.option("--level", type=click.IntRange(min=0), default=None,
              help="Pyramid level (default 0; for a PNG the finest level at most 2048 px wide).")
@click.option("--channel", metavar="C", help="One channel, by index or name (default: all).")
@click.option("--t", "t", type=click.IntRange(min=0), default=None,
              help="One time point (default: all; a PNG shows the first).")
@click.option("--dtype", type=click.Choice(["uint8", "uint16"]), default=None,
              help="TIFF/v3draw: scale voxels to this type (default: keep the source's).")
@click.option("--range", "value_range", metavar="auto|MIN,MAX", default="auto", show_default=True,
              help="With --dtype, the values mapped to 0 and the type's maximum: auto takes the "
                   "0.1 and 99.9 percentiles of a sample of chunks, per channel. For movies and "
                   "PNGs, MIN,MAX fixes the contrast (default: percentiles).")
@click.option("--plane", type=click.IntRange(min=0), default=None,
              help="Movies of a time series and PNGs: this z plane of the region instead of "
                   "the maximum projection.")
@click.option("--fps", type=float, default=10.0, show_default=True, help="Movie frame rate.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
def export(src, out, region, level, channel, t, dtype, value_range, plane, fps, overwrite) -> None:
    """Export the OME-Zarr image SRC to OUT: the suffix of OUT chooses the format.

    \b
    .tif/.tiff  ImageJ hyperstack (axes, voxel size, unit) for Fiji and Vaa3D;
                over 4 GiB an OME-TIFF in BigTIFF (Fiji: Bio-Formats)
    .v3draw     Vaa3D's raw format (one time point)
    .mp4/.gif   a movie: one maximum projection (or --plane) per time point,
                or a sweep through z when there is one time point
    .png        a maximum-projection preview with a scale bar

    Memory stays bounded: pieces of a few planes are read and written in place,
    under a temporary name that is renamed when the file is complete.

    \b
    Example:
      vol export brain.zarr brain.tif --dtype uint8
      vol export brain.zarr crop.v3draw --region z=10:50,y=0:256 --channel 1
      vol export worm.zarr worm.mp4 --fps 5
      vol export brain.zarr preview.png
    """
    from volumetric.ops.export import export as run_export

    report = run_export(src, out, region=region, level=level, channel=channel, t=t, dtype=dtype,
                        value_range=value_range, plane=plane, fps=fps, overwrite=overwrite)
    size = "x".join(map(str, report.shape))
    frames = f", {report.frames} frame(s)" if report.frames and report.frames > 1 else ""
    click.echo(f"wrote {out}: {report.kind}, level {report.level}, tczyx {size} {report.dtype}"
               f"{frames} in {report.seconds:.1f} s")
