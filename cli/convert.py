"""``vol convert``: any input to OME-Zarr."""

from __future__ import annotations

import click

from volumetric_cli.options import float_tuple, int_tuple, levels_option, run_options


@click.command()
@click.argument("src")
@click.argument("dst")
@click.option("--dataset", metavar="PATH", help="Dataset or group of frames inside an HDF5 file, "
              "array inside a Zarr group, or series number of a TIFF.")
@click.option("--axes", metavar="STR", help="Axis order of the source, e.g. cxyz (default: "
              "metadata, else yx / zyx / czyx / tczyx).")
@click.option("--chunks", metavar="Z,Y,X", callback=int_tuple, help="Chunk shape (default: about 2 MB).")
@click.option("--shards", metavar="Z,Y,X", callback=int_tuple, help="Shard shape, a multiple of the chunks (NGFF 0.5).")
@levels_option()
@click.option("--downsampling", type=click.Choice(["mean", "nearest"]), default="mean",
              show_default=True, help="Pyramid reduction (nearest for label images).")
@click.option("--voxel-size", metavar="Z,Y,X", callback=float_tuple,
              help="Voxel size, overriding the source's metadata.")
@click.option("--unit", metavar="NAME", help="Unit of the voxel size, e.g. micrometer or um.")
@click.option("--ngff", type=click.Choice(["0.5", "0.4"]), default="0.5", show_default=True,
              help="0.5 writes Zarr v3, 0.4 writes Zarr v2.")
@click.option("--compressor", default="blosc-zstd", show_default=True,
              help="blosc-zstd, blosc-lz4, zstd, gzip or none, optionally NAME:LEVEL.")
@run_options(block_mb="Target size of one block task in MiB, in whole chunks or shards "
                      "(default: 16).")
def convert(src: str, dst: str, dataset, axes, chunks, shards, levels, downsampling, voxel_size,
            unit, ngff, compressor, run) -> None:
    """Convert SRC (HDF5, TIFF, image folder, video, .npy, Zarr) to the OME-Zarr image DST.

    The full-resolution array is DST/0. An interrupted conversion resumes when
    the same command is run again.

    \b
    Example:
      vol convert brain.h5 brain.zarr --voxel-size 2,0.5,0.5 --unit um --levels 4
      vol convert frames.h5 frames.zarr --dataset frames --axes cxyz
      vol convert 'scans/*.png' scans.zarr --voxel-size 1,0.5,0.5 --unit um
    """
    from volumetric.ops.convert import convert as run_convert

    report = run_convert(
        src, dst, dataset=dataset, axes=axes, chunks=chunks, shards=shards, levels=levels,
        voxel_size=voxel_size, unit=unit, ngff=ngff, compressor=compressor,
        downsampling=downsampling, run=run,
    )
    image = report.image
    mb = report.bytes_read / 2**20
    click.echo(
        f"wrote {dst}: {image.meta.axes} {'x'.join(map(str, image.shape))} "
        f"{image.array(0).dtype}, {len(image.levels)} level(s), {report.blocks} blocks, "
        f"{mb:.0f} MiB in {report.seconds:.1f} s ({mb / max(report.seconds, 1e-9):.0f} MiB/s)"
    )
