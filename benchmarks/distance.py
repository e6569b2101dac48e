"""Clipped distance map of a sparse neurite mask: vol distance (block-wise) vs whole-array scipy.

The baseline is what a script does today: load the whole mask, run
``scipy.ndimage.distance_transform_edt`` with the voxel size as sampling,
clip, and write the float32 result with the same chunks; it runs in a fresh
subprocess, which also reports its time after the imports. ``vol distance``
is measured twice: as the command line runs it in a fresh subprocess
(``cold``: its embedded cluster's start-up included), and as an operation
on a cluster that is already running (``warm``: the benchmark's own
cluster, as in a pipeline or with ``--cluster``). Peak RSS is that of the
whole process tree (for ``warm``: this process and its workers). Every
output is compared with scipy's voxel by voxel. ``--unclipped`` also times
the exact unclipped map (separable out-of-core passes).

    python -m benchmarks.distance [--side 512] [--clip 10] [--workers 2] [--unclipped]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import zarr

from benchmarks.measure import add_scratch_options, measure_call, python_cmd, report, run_measured, scratch_dir
from benchmarks.neurites import write_image
from volumetric.engine import RunOptions
from volumetric.engine.cluster import local_cluster
from volumetric.ops.distance import distance
from volumetric.testing.neurites import neurites

VOXEL = (2.0, 1.0, 1.0)
CHUNKS = 64

SCIPY = """
import time
import numpy as np, zarr
from scipy import ndimage
t0 = time.perf_counter()
mask = zarr.open_array({src!r}, mode="r")[...]
dist = ndimage.distance_transform_edt(mask == 0, sampling={voxel!r})
dist = dist if {clip!r} is None else np.minimum(dist, {clip!r})
out = zarr.create_array({dst!r}, shape=mask.shape, chunks=({chunks},) * 3, dtype="float32")
out[...] = dist.astype(np.float32)
print(time.perf_counter() - t0)
"""


def _difference(a: Path, b: Path) -> float:
    return float(np.max(np.abs(zarr.open_array(str(a), mode="r")[...]
                               - zarr.open_array(str(b), mode="r")[...])))


def _case(mask: Path, scratch: Path, case: str, clip: float | None, workers: int,
          warm: tuple) -> dict:
    scipy_out, cold_out = scratch / f"scipy-{case}.zarr", scratch / f"cold-{case}.zarr"
    baseline = run_measured(python_cmd(SCIPY.format(src=str(mask / "0"), dst=str(scipy_out),
                                                    voxel=VOXEL, clip=clip, chunks=CHUNKS)))
    cold = run_measured([
        sys.executable, "-m", "volumetric_cli.main", "-q", "distance", str(mask), str(cold_out),
        "--workers", str(workers), *(["--clip", str(clip)] if clip is not None else []),
    ])
    scipy_compute = float(baseline.stdout.split()[-1])
    result = {
        "scipy": {"seconds": baseline.seconds, "seconds_after_imports": scipy_compute,
                  "peak_rss_mib": baseline.peak_rss_mib},
        "vol_cold": {"seconds": cold.seconds, "peak_rss_mib": cold.peak_rss_mib},
        "vol_warm": {"seconds": warm[0].seconds, "peak_rss_mib": warm[0].peak_rss_mib},
        "speedup_cold": baseline.seconds / cold.seconds,
        "speedup_warm": scipy_compute / warm[0].seconds,
        "max_abs_difference": max(_difference(scipy_out, cold_out / "0"),
                                  _difference(scipy_out, warm[1])),
    }
    shutil.rmtree(scipy_out)
    shutil.rmtree(cold_out)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512, help="volume side in voxels")
    parser.add_argument("--clip", type=float, default=10.0, help="clip distance (micrometers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--unclipped", action="store_true", help="also time the unclipped map")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    shape = (args.side,) * 3
    cases = {"clipped": args.clip, **({"unclipped": None} if args.unclipped else {})}

    from distributed import Client

    with scratch_dir("distance", args) as scratch:
        mask = scratch / "mask.zarr"
        warm = {}
        with local_cluster(args.workers, dashboard_address=":0") as cluster, Client(cluster) as cl:
            volume = neurites(shape, voxel_size=VOXEL, seed=args.seed)
            foreground = write_image(mask, volume, raw=False, chunks=CHUNKS, client=cl)
            for case, clip in cases.items():
                out = scratch / f"warm-{case}.zarr"
                run = RunOptions(client=cl, progress=False)
                measured, _ = measure_call(lambda: distance(str(mask), str(out), clip=clip,
                                                            run=run))
                warm[case] = (measured, out / "0")
        results = {
            "shape": list(shape), "voxel_size": list(VOXEL), "chunks": CHUNKS,
            "clip": args.clip, "workers": args.workers, "foreground_fraction": foreground,
            "load_average": list(os.getloadavg()),
            **{case: _case(mask, scratch, case, clip, args.workers, warm[case])
               for case, clip in cases.items()},
            "targets": {"clipped_speedup_at_least": 3.0},
        }
        rows = []
        for case in cases:
            r = results[case]
            rows += [
                (f"{case}: scipy whole array", f"{r['scipy']['seconds']:.1f}",
                 f"{r['scipy']['seconds_after_imports']:.1f}", f"{r['scipy']['peak_rss_mib']:.0f}"),
                (f"{case}: vol distance, cold CLI", f"{r['vol_cold']['seconds']:.1f}", "",
                 f"{r['vol_cold']['peak_rss_mib']:.0f}"),
                (f"{case}: vol distance, warm cluster", "", f"{r['vol_warm']['seconds']:.1f}",
                 f"{r['vol_warm']['peak_rss_mib']:.0f}"),
            ]
        print(f"mask {shape} uint8, voxel {VOXEL} um, foreground {100 * foreground:.3f} %, "
              f"clip {args.clip} um, {args.workers} workers")
        report("distance", results, rows, ("run", "seconds", "compute s", "peak RSS MiB"))
        for case in cases:
            r = results[case]
            print(f"{case}: speedup {r['speedup_cold']:.1f}x cold, {r['speedup_warm']:.1f}x warm; "
                  f"max |vol - scipy| {r['max_abs_difference']:.2e}")
        return results


if __name__ == "__main__":
    main()
