"""The demo behind ``make demo``: the whole pipeline on a synthetic neurite volume.

Runs every stage on one embedded LocalCluster (its dashboard link is printed
first), writing into one folder, then prints a summary table::

    python -m volumetric.demo demo-out [--shape 128,256,256] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from volumetric.engine import connect


def _stages(out: Path, shape: tuple[int, ...], client: Any) -> list[tuple[str, Callable[[], str]]]:
    """(name, run) pairs; each run returns a one-line result for the summary."""
    import numpy as np
    import zarr

    from volumetric.ops.convert import convert
    from volumetric.ops.discover import discover
    from volumetric.ops.distance import distance
    from volumetric.ops.info import image_info
    from volumetric.ops.project import project
    from volumetric.ops.render import render
    from volumetric.testing.neurites import neurites, write_neurites

    h5 = out / "neurites.h5"
    common = {"client": client, "overwrite": True, "chunks": (32, 64, 64), "block_bytes": 2**20}

    def synth() -> str:
        _, swc, fraction = write_neurites(h5, neurites(shape, voxel_size=(1.0, 0.5, 0.5), seed=7),
                                          chunks=(32, 64, 64), overwrite=True)
        return f"{h5.name} + {swc.name}, {fraction:.2%} foreground"

    def convert_raw() -> str:
        report = convert(str(h5), str(out / "raw.zarr"), dataset="raw", levels=3, **common)
        info = image_info(str(out / "raw.zarr"))
        return (f"raw.zarr {info['shape']} {info['dtype']}, {len(info['levels'])} levels, "
                f"compression {info['compression_ratio']:.1f}x, {report.seconds:.1f} s")

    def convert_mask() -> str:
        convert(str(h5), str(out / "mask.zarr"), dataset="mask", **common)
        return "mask.zarr"

    def discover_cubes() -> str:
        cubes = discover(str(out / "mask.zarr"), str(out / "cubes.json"),
                         seeds_swc=str(h5.with_suffix(".swc")), min_voxels=20, client=client,
                         overwrite=True)
        total = int(np.prod(cubes.grid.grid_shape))
        return (f"cubes.json: {len(cubes.cubes)} of {total} cubes kept, "
                f"{cubes.info['cubes_read']} read")

    def distance_map() -> str:
        distance(str(out / "mask.zarr"), str(out / "distance.zarr"), clip=5.0, client=client,
                 overwrite=True)
        return "distance.zarr: distance to the neurites in micrometers, clipped at 5"

    def render_swc() -> str:
        render(str(h5.with_suffix(".swc")), str(out / "raw.zarr"), str(out / "rendered.zarr"),
               client=client, overwrite=True)
        drawn = zarr.open_array(out / "rendered.zarr" / "0")[:] > 0
        truth = zarr.open_array(out / "mask.zarr" / "0")[:] > 0
        dice = 2 * np.count_nonzero(drawn & truth) / (drawn.sum() + truth.sum())
        return f"rendered.zarr: SWC drawn on raw's grid, Dice {dice:.3f} against the mask"

    def project_raw() -> str:
        project(str(out / "raw.zarr"), str(out / "mip.zarr"), png=str(out / "mip.png"),
                client=client, overwrite=True)
        return "mip.zarr + mip.png: maximum projection along z"

    return [
        ("synthesize", synth), ("convert raw", convert_raw), ("convert mask", convert_mask),
        ("discover", discover_cubes), ("distance", distance_map), ("render", render_swc),
        ("project", project_raw),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volumetric.demo", description=__doc__)
    parser.add_argument("out", type=Path, help="folder for every output (replaced)")
    parser.add_argument("--shape", default="128,256,256", help="synthetic volume z,y,x")
    parser.add_argument("--workers", type=int, default=None, help="worker processes")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    summary = []
    t_all = time.monotonic()
    with connect(workers=args.workers) as client:
        for name, run in _stages(args.out, shape, client):
            print(f"\n== {name}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            result = run()
            summary.append((name, time.monotonic() - t0, result))
    print(f"\nvolumetric demo: {shape} voxels, outputs in {args.out}/")
    width = max(len(n) for n, _, _ in summary)
    for name, seconds, result in summary:
        print(f"  {name.ljust(width)}  {seconds:6.1f} s  {result}")
    print(f"  {'total'.ljust(width)}  {time.monotonic() - t_all:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
