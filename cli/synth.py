"""``vol synth``: deterministic synthetic data sets, written chunk by chunk."""

from __future__ import annotations

import click

from volumetric_cli.options import float_tuple, int_tuple

seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Same seed, same data.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")


@click.group()
def synth() -> None:
    """Write synthetic data sets (neurites, moving-brain frames, EM-like blobs, z-stacks).

    Every output is deterministic for a given seed and is computed block by
    block, so it may be larger than memory.
    """


@synth.command()
@click.argument("out")
@click.option("--shape", metavar="Z,Y,X", callback=int_tuple, default="128,256,256",
              show_default=True, help="Volume shape.")
@click.option("--voxel-size", metavar="Z,Y,X", callback=float_tuple, default="1,1,1",
              show_default=True, help="Micrometers per voxel.")
@click.option("--neurites", type=click.IntRange(min=1), default=None,
              help="Number of neurite trees (default: enough for --foreground).")
@click.option("--foreground", type=click.FloatRange(min=0, max=1, min_open=True), default=0.003,
              show_default=True, help="Target foreground fraction when --neurites is not given.")
@click.option("--chunks", metavar="Z,Y,X", callback=int_tuple, default="64,64,64",
              show_default=True, help="HDF5 chunk shape.")
@seed_option
@overwrite_option
def neurites(out: str, shape, voxel_size, neurites, foreground, chunks, seed, overwrite) -> None:
    """Sparse branching tubes: OUT (HDF5 datasets raw, mask) and its skeleton OUT.swc.

    raw is uint16 (Poisson background, brighter blurred tubes), mask is uint8
    0/1; both z, y, x with element_size_um attributes. SWC coordinates are
    x, y, z in micrometers (voxel index times voxel size).

    \b
    Example:
      vol synth neurites neurites.h5 --shape 512,512,512 --seed 1
      vol convert neurites.h5 neurites.zarr --dataset raw
    """
    from volumetric.testing.neurites import neurites as make, write_neurites

    volume = make(shape, voxel_size=voxel_size, count=neurites, foreground=foreground, seed=seed)
    h5, swc, fraction = write_neurites(out, volume, chunks=chunks, overwrite=overwrite)
    trees = int((volume.trees.parent < 0).sum())
    click.echo(f"wrote {h5} (raw, mask {'x'.join(map(str, shape))}, {100 * fraction:.2f}% "
               f"foreground) and {swc} ({trees} tree(s), {len(volume.trees.radius)} nodes)")


@synth.command()
@click.argument("out")
@click.option("--frames", "count", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of frames.")
@click.option("--shape", metavar="C,X,Y,Z", callback=int_tuple, default="2,96,96,16",
              show_default=True, help="Shape of one frame.")
@click.option("--nuclei", type=click.IntRange(min=1), default=120, show_default=True,
              help="Number of nuclei in the brain.")
@click.option("--rotation", metavar="DEGREES", type=float, default=25.0, show_default=True,
              help="Amplitude of the rotation about z (0: translation only).")
@click.option("--affine", metavar="AMOUNT", type=float, default=0.0, show_default=True,
              help="Amplitude of the scale and shear of the x, y plane (0.08: up to about 8%).")
@click.option("--bend", metavar="AMOUNT", type=float, default=0.0, show_default=True,
              help="Amplitude of the non-rigid bending of the head, as a fraction of the "
                   "frame's side (0.03: up to about 3%).")
@seed_option
@overwrite_option
def frames(out: str, count: int, shape, nuclei: int, rotation: float, affine: float,
           bend: float, seed: int, overwrite: bool) -> None:
    """A moving brain: OUT (HDF5) with frames/frame_0.. (C, X, Y, Z), its motion and landmarks.

    The dataset transforms (n, 4, 4) maps reference voxel coordinates
    (x, y, z, 1) to those of each frame (the affine part of the motion);
    nuclei holds the reference positions and landmarks (n, k, 3) the x, y, z
    position of every nucleus in every frame, the bend included.

    \b
    Example:
      vol synth frames worm.h5 --frames 575 --shape 2,512,512,35 --bend 0.03
      vol convert worm.h5 worm.zarr --axes cxyz
    """
    from volumetric.testing.frames import frames as make, write_frames

    movie = make(shape, count, nuclei=nuclei, seed=seed, rotation=rotation, affine=affine,
                 bend=bend)
    path = write_frames(out, movie, overwrite=overwrite)
    click.echo(f"wrote {path} ({count} frames of {'x'.join(map(str, shape))}, axes cxyz)")


@synth.command()
@click.argument("out")
@click.option("--shape", metavar="Z,Y,X", callback=int_tuple, default="32,256,256",
              show_default=True, help="Volume shape.")
@click.option("--fraction", type=click.FloatRange(min=0, max=1, min_open=True), default=0.12,
              show_default=True, help="Target fraction of the volume inside organelles.")
@seed_option
@overwrite_option
def mito(out: str, shape, fraction: float, seed: int, overwrite: bool) -> None:
    """EM-like organelles: OUT (uint8 multipage TIFF) and OUT_labels.tif (uint16 instance ids).

    \b
    Example:
      vol synth mito em.tif --shape 64,512,512 --seed 3
      vol convert em.tif em.zarr
    """
    from volumetric.testing.mito import mito as make, write_mito

    volume = make(shape, fraction=fraction, seed=seed)
    image, labels = write_mito(out, volume, overwrite=overwrite)
    click.echo(f"wrote {image} and {labels} ({len(volume.centres)} organelles)")


@synth.command()
@click.argument("prefix")
@click.option("--samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Number of independent fields of cells.")
@click.option("--shape", metavar="Y,X", callback=int_tuple, default="256,256",
              show_default=True, help="Image shape.")
@click.option("--planes", type=click.IntRange(min=1), default=7, show_default=True,
              help="Brightfield planes, evenly spaced from -3 to 3 micrometers of defocus.")
@seed_option
@overwrite_option
def zstack(prefix: str, samples: int, shape, planes: int, seed: int, overwrite: bool) -> None:
    """Brightfield defocus stacks and in-focus nuclei fluorescence, as two TIFFs.

    Writes PREFIX_brightfield.tif (n, planes, y, x) and PREFIX_fluorescence.tif
    (n, y, x), both uint16.

    \b
    Example:
      vol synth zstack cells --samples 100 --shape 512,512
    """
    from volumetric.testing.zstack import write_zstack, zstack as make

    bright, fluo = write_zstack(prefix, make(shape, samples, planes=planes, seed=seed),
                                overwrite=overwrite)
    click.echo(f"wrote {bright} and {fluo} ({samples} samples of {planes} planes)")
