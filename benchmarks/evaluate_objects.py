"""Object evaluation of thousands of objects: vol evaluate (block-wise) vs whole-array scipy.

The truth is a binary mask of random balls (some touching, so components
are not balls), the prediction the same balls moved by a voxel, resized,
with some dropped and some spurious ones added. The baseline is what a
script does today, in a fresh subprocess: read both arrays whole,
``scipy.ndimage.label`` each, count sizes and overlaps on the whole array,
and match with the same matching as vol (``kernels.objects``). ``vol -q
evaluate --threshold 0.5 --json`` runs as a fresh subprocess on its embedded
cluster (start-up included). Both report object counts, which must be equal;
peak RSS is that of the whole process tree.

    python -m benchmarks.evaluate_objects [--shape 512,512,512] [--balls 16000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import zarr

from benchmarks.measure import add_scratch_options, python_cmd, report, run_measured, scratch_dir
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

CHUNKS = 64
SLAB = 64

SCIPY = """
import json, time
import numpy as np, zarr
from scipy import ndimage
from volumetric.kernels.objects import match_objects
t0 = time.perf_counter()
truth = zarr.open_array({truth!r}, mode="r")[...] != 0
pred = zarr.open_array({pred!r}, mode="r")[...] > 0.5
t, nt = ndimage.label(truth)
p, npred = ndimage.label(pred)
both = (t != 0) & (p != 0)
code, shared = np.unique(t[both].astype(np.int64) * (npred + 1) + p[both], return_counts=True)
pairs = np.stack([code // (npred + 1), code % (npred + 1), shared], axis=1)
found = match_objects(np.bincount(t.ravel()), np.bincount(p.ravel()), pairs)
print(json.dumps({{"objects": found["scores"], "seconds": time.perf_counter() - t0}}))
"""


def _paint(path: Path, shape: tuple[int, ...], centres: np.ndarray, radii: np.ndarray) -> None:
    """Write the balls as a uint8 OME-Zarr mask, slab by slab."""
    meta = ImageMeta("zyx", (1.0, 1.0, 1.0), unit="micrometer", name=path.name)
    create_image(path, meta, [LevelSpec("0", shape, (1, 1, 1))], dtype=np.uint8,
                 chunks=(CHUNKS,) * 3)
    array = zarr.open_array(str(path / "0"), mode="r+")
    for z0 in range(0, shape[0], SLAB):
        z1 = min(z0 + SLAB, shape[0])
        slab = np.zeros((z1 - z0, *shape[1:]), np.uint8)
        near = (centres[:, 0] + radii >= z0) & (centres[:, 0] - radii < z1)
        for c, r in zip(centres[near], radii[near]):
            lo = np.maximum(c - r, (z0, 0, 0))
            hi = np.minimum(c + r + 1, (z1, *shape[1:]))
            zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
            slab[lo[0] - z0:hi[0] - z0, lo[1]:hi[1], lo[2]:hi[2]] |= ball.astype(np.uint8)
        array[z0:z1] = slab
    finalize_image(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="512,512,512", help="volume shape z,y,x")
    parser.add_argument("--balls", type=int, default=None,
                        help="truth balls (default: 16000 per 512^3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    balls = args.balls or max(1, int(16000 * np.prod(shape) / 512**3))
    rng = np.random.default_rng(args.seed)
    centres = (rng.random((balls, 3)) * shape).astype(int)
    radii = rng.integers(2, 6, balls)
    kept = rng.random(balls) > 0.1
    extra = 1 + balls // 20
    pred_centres = np.concatenate([centres[kept] + rng.integers(-1, 2, (kept.sum(), 3)),
                                   (rng.random((extra, 3)) * shape).astype(int)])
    pred_radii = np.concatenate([np.maximum(radii[kept] + rng.integers(-1, 2, kept.sum()), 1),
                                 rng.integers(1, 3, extra)])

    with scratch_dir("evaluate_objects", args) as scratch:
        truth, pred = scratch / "truth.zarr", scratch / "pred.zarr"
        _paint(truth, shape, centres, radii)
        _paint(pred, shape, pred_centres, pred_radii)
        baseline = run_measured(python_cmd(SCIPY.format(truth=str(truth / "0"),
                                                        pred=str(pred / "0"))))
        vol = run_measured([sys.executable, "-m", "volumetric_cli.main", "-q", "evaluate",
                            str(pred), str(truth), "--threshold", "0.5", "--json",
                            "--workers", str(args.workers)])
        ref = json.loads(baseline.stdout)
        scores = json.loads(vol.stdout)
        keys = ("truth", "predicted", "matched", "splits", "merges")
        results = {
            "shape": list(shape), "balls": balls, "chunks": CHUNKS, "workers": args.workers,
            "load_average": list(os.getloadavg()),
            "scipy": {"seconds": baseline.seconds, "seconds_after_imports": ref["seconds"],
                      "cpu_seconds": baseline.cpu_seconds, "peak_rss_mib": baseline.peak_rss_mib,
                      "objects": ref["objects"]},
            "vol": {"seconds": vol.seconds, "cpu_seconds": vol.cpu_seconds,
                    "peak_rss_mib": vol.peak_rss_mib, "objects": scores["objects"]},
            "equal_counts": all(ref["objects"][k] == scores["objects"][k] for k in keys),
            "time_ratio": vol.seconds / baseline.seconds,
            "rss_ratio": vol.peak_rss_mib / baseline.peak_rss_mib,
        }
        rows = [(name, f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}", f"{r['peak_rss_mib']:.0f}",
                 str(r["objects"]["truth"]), str(r["objects"]["predicted"]),
                 str(r["objects"]["matched"]))
                for name, r in (("scipy whole array + matching", results["scipy"]),
                                ("vol evaluate (cold CLI)", results["vol"]))]
        print(f"masks {shape} uint8, {balls} truth balls, chunks {CHUNKS}, {args.workers} workers")
        report("evaluate_objects", results, rows,
               ("run", "seconds", "CPU s", "peak RSS MiB", "truth", "predicted", "matched"))
        print(f"equal counts: {results['equal_counts']}; time ratio vol/scipy "
              f"{results['time_ratio']:.2f}; peak RSS ratio {results['rss_ratio']:.2f}")
        return results


if __name__ == "__main__":
    main()
