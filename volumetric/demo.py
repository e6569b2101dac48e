"""The demo behind ``make demo``: the whole pipeline on a synthetic neurite volume.

Runs every stage on one embedded LocalCluster (its dashboard link is printed
first), writing into one folder, then prints a summary table::

    python -m volumetric.demo demo-out [--shape 96,192,192] [--workers 2]
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
    from volumetric.ops.convert import convert
    from volumetric.ops.info import image_info
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

    return [("synthesize", synth), ("convert raw", convert_raw), ("convert mask", convert_mask)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volumetric.demo", description=__doc__)
    parser.add_argument("out", type=Path, help="folder for every output (replaced)")
    parser.add_argument("--shape", default="96,192,192", help="synthetic volume z,y,x")
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
