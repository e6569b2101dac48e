"""Start-up of a block-wise command on a tiny volume against ``vol info`` on the same volume.

A block-wise command on an 8^3 mask does almost no work: what it costs
beyond ``vol info`` (Python, the imports, reading the metadata) is the
embedded cluster. Four commands alternate, each in a fresh subprocess
(:mod:`benchmarks.alternate`): ``vol -q info`` on the OME-Zarr mask, ``vol -q
distance --clip 3`` on it (a small job: workers are threads of the command's
process), the same on an HDF5 copy (HDF5 is read from worker processes: the
embedded cluster of ``--workers`` processes) and ``vol -q convert`` of the
HDF5 copy. ``--before DIR`` adds the same commands run with an earlier
checkout of volumetric (see :mod:`benchmarks.alternate`).

The phases of the embedded cluster (starting it, the first task, closing
it) are timed in this process too, for worker processes and for threads.

    python -m benchmarks.startup [--rounds 7] [--workers 2] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from benchmarks.alternate import alternate, before_python, vol_python
from benchmarks.measure import add_scratch_options, report, scratch_dir


def _write_inputs(scratch: Path) -> tuple[Path, Path]:
    """The 8^3 mask as OME-Zarr and as HDF5."""
    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image
    import zarr

    mask = (np.random.default_rng(0).random((8, 8, 8)) > 0.7).astype(np.uint8)
    store = scratch / "m8.zarr"
    create_image(store, ImageMeta("zyx", (1.0, 1.0, 1.0), unit="micrometer"),
                 [LevelSpec("0", mask.shape, (1, 1, 1))], dtype=np.uint8, chunks=mask.shape)
    zarr.open_array(str(store / "0"), mode="r+")[...] = mask
    finalize_image(store)
    with h5py.File(scratch / "m8.h5", "w") as f:
        f["mask"] = mask
    return store, scratch / "m8.h5"


def _phases(workers: int, in_process: bool) -> dict[str, float]:
    """Seconds to start the embedded cluster, run a first task and close it, in this process."""
    from volumetric.engine.cluster import connect

    t0 = time.perf_counter()
    with connect(f"local:{workers}", quiet=True, in_process=in_process) as client:
        t1 = time.perf_counter()
        client.submit(sum, [1, 2]).result()
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    return {"start": t1 - t0, "first_task": t2 - t1, "close": t3 - t2}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before", type=Path, default=None,
                        help="an earlier checkout of volumetric to time in the same rounds")
    add_scratch_options(parser)
    args = parser.parse_args(argv)

    with scratch_dir("startup", args) as scratch:
        zarr_mask, h5_mask = _write_inputs(scratch)
        out = scratch / "out.zarr"
        workers = ["--workers", str(args.workers)]
        prefixes = {"": vol_python()}
        if args.before is not None:
            prefixes["before: "] = before_python(args.before, scratch)
        commands: dict[str, list[str]] = {}
        for tag, vol in prefixes.items():
            commands[f"{tag}vol info (Zarr)"] = [*vol, "-q", "info", str(zarr_mask)]
            commands[f"{tag}vol distance (Zarr)"] = [*vol, "-q", "distance", str(zarr_mask),
                                                     str(out), "--clip", "3", *workers]
            commands[f"{tag}vol distance (HDF5: worker processes)"] = [
                *vol, "-q", "distance", str(h5_mask), str(out), "--clip", "3", *workers]
            commands[f"{tag}vol convert (HDF5: worker processes)"] = [
                *vol, "-q", "convert", str(h5_mask), str(out), *workers]
        timings = alternate(commands, args.rounds,
                            before_each=lambda _: shutil.rmtree(out, ignore_errors=True))
        # threads first: their start then includes the imports both kinds need (the dashboard)
        phases = {"threads": _phases(args.workers, True), "processes": _phases(args.workers, False)}

    results = {"workers": args.workers, "rounds": args.rounds,
               "load_average": list(os.getloadavg()), "commands": timings, "phases": phases}
    rows = []
    for tag in prefixes:
        info = timings[f"{tag}vol info (Zarr)"]
        for name, t in timings.items():
            if not name.startswith(tag) or (not tag and name.startswith("before: ")):
                continue
            rows.append((name, f"{t['wall_median']:.2f}", f"{t['wall_min']:.2f}",
                         f"{t['cpu_median']:.2f}",
                         f"{t['wall_median'] - info['wall_median']:+.2f}",
                         f"{t['cpu_median'] - info['cpu_median']:+.2f}"))
    report("startup", results, rows, ("command (8^3 mask)", "wall median s", "wall min s",
                                      "CPU median s", "wall - info s", "CPU - info s"))
    for kind, p in phases.items():
        print(f"embedded cluster of {args.workers} {kind}: start {p['start']:.2f} s, "
              f"first task {p['first_task']:.2f} s, close {p['close']:.2f} s")
    return results


if __name__ == "__main__":
    main()
