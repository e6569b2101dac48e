"""``vol discover``: occupied cubes connected to seeds, by breadth-first search."""

from __future__ import annotations

from typing import Any

import click

from volumetric_cli.options import int_tuple, run_options


def _seeds(ctx: click.Context, param: click.Parameter, values: Any) -> list[tuple[int, ...]]:
    seeds = []
    for value in values:
        try:
            seed = tuple(int(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not z,y,x voxel coordinates") from None
        if any(v < 0 for v in seed):
            raise click.BadParameter(f"{value!r}: voxel coordinates cannot be negative")
        seeds.append(seed)
    return seeds


@click.command()
@click.argument("raw")
@click.argument("out")
@click.option("--seed", "seeds", multiple=True, metavar="Z,Y,X", callback=_seeds,
              help="Seed voxel (repeatable).")
@click.option("--seeds-swc", metavar="FILE", help="SWC file: every node is a seed.")
@click.option("--all", "scan_all", is_flag=True,
              help="Read every cube (the baseline); without seeds keep every occupied cube.")
@click.option("--cube", metavar="Z,Y,X", callback=int_tuple,
              help="Cube shape, a multiple of RAW's chunks (default: the chunk shape).")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="Foreground is above this value (0: nonzero voxels of a mask).")
@click.option("--min-voxels", type=int, default=100, show_default=True,
              help="Foreground voxels that make a cube occupied.")
@click.option("--connectivity", type=click.Choice(["6", "18", "26"]), default="26",
              show_default=True, help="Cube adjacency (faces, +edges, +corners).")
@click.option("--t", "t", type=click.IntRange(min=0), help="Time point of a 5D image (default 0).")
@click.option("--channel", type=click.IntRange(min=0), help="Channel of a 4D/5D image (default 0).")
@click.option("--store-in", metavar="ZARR",
              help="Also store the list in this OME-Zarr image's attributes (e.g. RAW itself).")
@run_options()
def discover(raw: str, out: str, seeds, seeds_swc, scan_all, cube, threshold, min_voxels,
             connectivity, t, channel, store_in, run) -> None:
    """Find the occupied cubes of RAW connected to seed cubes and write them to OUT (JSON).

    Breadth-first from the seeds' cubes, one region of cubes per parallel
    task; each cube is read at most once, so the empty bulk is never read.
    OUT holds cube_shape, shape, cubes ([i, j, k] indices), cubes_read and the
    seeds; `predict` and `train` take it with --cubes. An interrupted run
    resumes from OUT.partial.

    \b
    Example:
      vol discover brain.zarr cubes.json --seed 120,512,700 --min-voxels 200
      vol discover brain.zarr cubes.json --seeds-swc neuron.swc --store-in brain.zarr
      vol discover mask.zarr all.json --all
    """
    from volumetric.ops.discover import discover as run_discover

    result = run_discover(
        raw, out, seeds=seeds, seeds_swc=seeds_swc, scan_all=scan_all, cube=cube,
        threshold=threshold, min_voxels=min_voxels, connectivity=int(connectivity), t=t,
        channel=channel, store_in=store_in, run=run,
    )
    info = result.info
    click.echo(
        f"wrote {out}: {len(result.cubes)} occupied cubes of {info['cubes_total']} "
        f"(cube {'x'.join(map(str, result.cube_shape))}), {info['cubes_read']} read "
        f"({info['levels']} levels, {info['tasks']} tasks), {info['seconds']:.1f} s"
    )
