"""Clipped distance map of a sparse neurite mask: vol distance (block-wise) vs whole-array scipy.

The baseline is what a script does today: load the whole mask, run
``scipy.ndimage.distance_transform_edt`` with the voxel size as sampling,
clip, and write the float32 result with the same chunks. ``vol distance
--clip`` runs as the command line does (an embedded cluster of
``--workers`` processes, its start-up included). Both run in fresh
subprocesses; peak RSS is that of the whole process tree. The outputs are
compared voxel by voxel. ``--unclipped`` also times the exact unclipped
map (separable out-of-core passes) against scipy's unclipped result.

    python -m benchmarks.distance [--side 512] [--clip 10] [--workers 2] [--unclipped]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

from benchmarks.measure import python_cmd, report, run_measured
from benchmarks.neurites import random_trees, write_neurites
from volumetric.engine.cluster import local_cluster

VOXEL = (2.0, 1.0, 1.0)
CHUNKS = 64

SCIPY = """
import numpy as np, zarr
from scipy import ndimage
mask = zarr.open_array({src!r}, mode="r")[...]
dist = ndimage.distance_transform_edt(mask == 0, sampling={voxel!r})
dist = dist if {clip!r} is None else np.minimum(dist, {clip!r})
out = zarr.create_array({dst!r}, shape=mask.shape, chunks=({chunks},) * 3, dtype="float32")
out[...] = dist.astype(np.float32)
"""


def _vol(mask: Path, out: Path, workers: int, clip: float | None) -> list[str]:
    cmd = [sys.executable, "-m", "volumetric_cli.main", "-q", "distance", str(mask), str(out),
           "--workers", str(workers)]
    return cmd + (["--clip", str(clip)] if clip is not None else [])


def _compare(case: str, mask: Path, scratch: Path, workers: int, clip: float | None) -> dict:
    scipy_out, vol_out = scratch / f"scipy-{case}.zarr", scratch / f"vol-{case}.zarr"
    baseline = run_measured(python_cmd(SCIPY.format(src=str(mask / "0"), dst=str(scipy_out),
                                                    voxel=VOXEL, clip=clip, chunks=CHUNKS)))
    vol = run_measured(_vol(mask, vol_out, workers, clip))
    a = zarr.open_array(str(scipy_out), mode="r")[...]
    b = zarr.open_array(str(vol_out / "0"), mode="r")[...]
    error = float(np.max(np.abs(a - b)))
    shutil.rmtree(scipy_out)
    shutil.rmtree(vol_out)
    return {
        "scipy": {"seconds": baseline.seconds, "peak_rss_mib": baseline.peak_rss_mib},
        "vol": {"seconds": vol.seconds, "peak_rss_mib": vol.peak_rss_mib},
        "speedup": baseline.seconds / vol.seconds,
        "max_abs_difference": error,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512, help="volume side in voxels")
    parser.add_argument("--clip", type=float, default=10.0, help="clip distance (micrometers)")
    parser.add_argument("--trees", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--unclipped", action="store_true", help="also time the unclipped map")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    args = parser.parse_args(argv)
    shape = (args.side,) * 3

    from distributed import Client

    scratch = Path(args.dir or tempfile.mkdtemp(prefix="vol-bench-distance-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        mask = scratch / "mask.zarr"
        with local_cluster(args.workers, dashboard_address=":0") as cluster, Client(cluster) as cl:
            segments, _ = random_trees(shape, args.trees, steps=200)
            foreground = write_neurites(mask, shape, segments, raw=False, chunks=CHUNKS,
                                        voxel_size=VOXEL, client=cl)
        results = {
            "shape": list(shape), "voxel_size": list(VOXEL), "chunks": CHUNKS,
            "clip": args.clip, "workers": args.workers, "foreground_fraction": foreground,
            "load_average": list(os.getloadavg()),
            "clipped": _compare("clipped", mask, scratch, args.workers, args.clip),
            "targets": {"clipped_speedup_at_least": 3.0},
        }
        if args.unclipped:
            results["unclipped"] = _compare("unclipped", mask, scratch, args.workers, None)
        rows = []
        for case in ("clipped", "unclipped"):
            if case in results:
                r = results[case]
                for name, label in (("scipy", "scipy whole array"),
                                    ("vol", f"vol distance ({args.workers} workers)")):
                    rows.append((f"{case}: {label}", f"{r[name]['seconds']:.1f}",
                                 f"{r[name]['peak_rss_mib']:.0f}"))
        print(f"mask {shape} uint8, voxel {VOXEL} um, foreground {100 * foreground:.3f} %, "
              f"clip {args.clip} um")
        report("distance", results, rows, ("run", "seconds", "peak RSS MiB"))
        for case in ("clipped", "unclipped"):
            if case in results:
                print(f"{case}: speedup {results[case]['speedup']:.1f}x, max |vol - scipy| "
                      f"{results[case]['max_abs_difference']:.2e}")
        return results
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
