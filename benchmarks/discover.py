"""Sparse cube discovery (BFS from the neurons' roots) vs the full scan (--all) on synthetic raw.

A raw uint16 volume of :mod:`volumetric.testing.neurites` (Poisson
background of 100 photons, brighter branching tubes, well under 1 %
foreground) is written as OME-Zarr; then ``discover`` runs from the trees'
roots and with ``scan_all`` on the same embedded cluster. Both
must return the same cubes; the cubes read by the search must lie within
the kept cubes plus their neighbours (and the seed cubes). Each mode runs
``--repeat`` times, alternating, after one untimed search that warms the
workers up; the best and median wall times and the median CPU times of the
whole process tree (steadier on a shared machine) are compared.

    python -m benchmarks.discover [--shape 1024,1024,1024] [--trees 1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
from itertools import product

from benchmarks.measure import add_scratch_options, measure_call, report, scratch_dir
from benchmarks.neurites import roots, write_image
from volumetric.engine import RunOptions
from volumetric.engine.cluster import local_cluster
from volumetric.ops.discover import discover
from volumetric.testing.neurites import neurites

THRESHOLD = 200


def neighbourhood(cubes, grid_shape) -> set:
    """The cubes plus their 26 neighbours inside the grid."""
    out = set()
    for c in cubes:
        for step in product((-1, 0, 1), repeat=3):
            n = tuple(a + s for a, s in zip(c, step))
            if all(0 <= a < g for a, g in zip(n, grid_shape)):
                out.add(n)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1024,1024,1024", help="volume shape z,y,x")
    parser.add_argument("--cube", type=int, default=64, help="chunk and cube side")
    parser.add_argument("--trees", type=int, default=1, help="neurons in the volume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--region", type=int, default=None,
                        help="cubes per axis of a search task's region (default: discover's)")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))

    from distributed import Client

    with scratch_dir("discover", args) as scratch:
        with local_cluster(args.workers, dashboard_address=":0") as cluster, Client(cluster) as cl:
            volume = neurites(shape, count=args.trees, seed=args.seed)
            raw = scratch / "raw.zarr"
            foreground = write_image(raw, volume, raw=True, chunks=args.cube, client=cl)
            common = dict(seeds=roots(volume), threshold=THRESHOLD,
                          run=RunOptions(client=cl, progress=False, overwrite=True))
            discover(str(raw), str(scratch / "warm-up.json"), **common)  # workers import zarr
            load_before = list(os.getloadavg())
            runs: dict[str, list] = {"search": [], "all": []}
            for _ in range(args.repeat):
                runs["search"].append(measure_call(
                    lambda: discover(str(raw), str(scratch / "search.json"), region=args.region,
                                     **common)))
                runs["all"].append(measure_call(
                    lambda: discover(str(raw), str(scratch / "all.json"), scan_all=True,
                                     **common)))
        best = {mode: min(r, key=lambda m: m[0].seconds) for mode, r in runs.items()}
        median = {mode: {key: statistics.median(getattr(m, key) for m, _ in r)
                         for key in ("seconds", "cpu_seconds")} for mode, r in runs.items()}
        search, full = best["search"][1], best["all"][1]
        kept = set(search.cubes)
        seed_cubes = {tuple(c) for c in search.info["seed_cubes"]}
        bound = neighbourhood(kept, search.grid.grid_shape) | seed_cubes
        t_search, t_all = best["search"][0].seconds, best["all"][0].seconds
        results = {
            "shape": list(shape), "cube": args.cube, "workers": args.workers,
            "foreground_fraction": foreground, "cubes_total": search.grid.num_blocks,
            "cubes_kept": len(kept), "cubes_read_search": search.info["cubes_read"],
            "cubes_read_all": full.info["cubes_read"], "kept_plus_neighbours": len(bound),
            "read_within_kept_plus_neighbours": search.info["cubes_read"] <= len(bound),
            "levels": search.info["levels"], "tasks_search": search.info["tasks"],
            "same_cubes": search.cubes == full.cubes,
            **{mode: {"seconds": [m.seconds for m, _ in r],
                      "cpu_seconds": [m.cpu_seconds for m, _ in r],
                      "peak_rss_mib": best[mode][0].peak_rss_mib} for mode, r in runs.items()},
            "speedup": t_all / t_search,
            "speedup_of_medians": median["all"]["seconds"] / median["search"]["seconds"],
            "cpu_ratio_of_medians": median["all"]["cpu_seconds"] / median["search"]["cpu_seconds"],
            "load_average": {"before": load_before, "after": list(os.getloadavg())},
            "targets": {"foreground_fraction_below": 0.01, "speedup_at_least": 5.0},
        }
        rows = [
            (label, f"{best[mode][0].seconds:.2f}", f"{median[mode]['seconds']:.2f}",
             f"{median[mode]['cpu_seconds']:.2f}", str(result.info["cubes_read"]),
             f"{best[mode][0].peak_rss_mib:.0f}")
            for label, mode, result in (("search from the roots", "search", search),
                                        ("--all (full scan)", "all", full))
        ]
        print(f"volume {shape} uint16, cubes {args.cube}^3, foreground {100 * foreground:.3f} %, "
              f"{len(kept)} cubes kept of {search.grid.num_blocks}, {search.info['levels']} "
              f"levels, {search.info['tasks']} search tasks")
        report("discover", results, rows, ("mode", "best s", "median s", "median CPU s",
                                           "cubes read", "peak RSS MiB"))
        print(f"search reads {search.info['cubes_read']} <= kept + neighbours {len(bound)}: "
              f"{results['read_within_kept_plus_neighbours']}; same cubes: "
              f"{results['same_cubes']}; speedup {results['speedup']:.1f}x (best of "
              f"{args.repeat}), {results['speedup_of_medians']:.1f}x (medians), CPU "
              f"{results['cpu_ratio_of_medians']:.1f}x (medians); load average "
              f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
        return results


if __name__ == "__main__":
    main()
