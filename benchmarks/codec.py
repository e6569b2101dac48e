"""Zarr's codec pipelines on block-task-sized reads and writes: zarr-python's default
against ``zarrs`` (a Rust codec pipeline for zarr-python; the ``fast`` extra).

Each task-sized piece is 4 chunks of 128^3 uint16 (noise on a ramp), blosc
zstd 5 with shuffle, written with one zarr call and read back with one, as
a block task of ``vol convert`` does (16 MiB blocks); the two pipelines
alternate in this process, ``--rounds`` times, and each is summarised by its
median wall time and its median CPU time (every thread of the process, the
codecs' own included). The stored chunks of both are compared byte for byte,
and each pipeline reads the other's array.

    python -m benchmarks.codec [--rounds 7] [--tasks 6]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.measure import add_scratch_options, report, scratch_dir

SIDE, CHUNKS_PER_TASK = 128, 4
PIPELINES = {"default": "zarr.core.codec_pipeline.BatchedCodecPipeline",
             "zarrs": "zarrs.ZarrsCodecPipeline"}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _blocks(tasks: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    ramp = ((yy + xx) % 512).astype(np.uint16)
    return [rng.integers(0, 64, (CHUNKS_PER_TASK * SIDE, SIDE, SIDE), dtype=np.uint16) + ramp
            + np.uint16(100 + i) for i in range(tasks)]


def _round(pipeline: str, path: Path, blocks: list[np.ndarray]) -> tuple[float, ...]:
    import zarr
    from zarr.codecs import BloscCodec

    depth = CHUNKS_PER_TASK * SIDE
    with zarr.config.set({"codec_pipeline.path": PIPELINES[pipeline]}):
        shutil.rmtree(path, ignore_errors=True)
        zarr.create_array(str(path), shape=(len(blocks) * depth, SIDE, SIDE), chunks=(SIDE,) * 3,
                          dtype="uint16",
                          compressors=BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"))
        t0, c0 = time.perf_counter(), _cpu()
        for i, block in enumerate(blocks):
            zarr.open_array(str(path), mode="r+")[i * depth:(i + 1) * depth] = block
        t1, c1 = time.perf_counter(), _cpu()
        for i, block in enumerate(blocks):
            read = zarr.open_array(str(path), mode="r")[i * depth:(i + 1) * depth]
        t2, c2 = time.perf_counter(), _cpu()
    assert np.array_equal(read, blocks[-1])
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def _chunk_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _cross_read(paths: dict[str, Path], blocks: list[np.ndarray]) -> bool:
    import zarr

    whole = np.concatenate(blocks)
    same = True
    for reader in PIPELINES:
        for written in paths.values():
            with zarr.config.set({"codec_pipeline.path": PIPELINES[reader]}):
                same &= bool(np.array_equal(zarr.open_array(str(written), mode="r")[...], whole))
    return same


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=6, help="task-sized pieces per round")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    try:
        import zarrs  # noqa: F401  (the benchmark needs both pipelines)
    except ImportError:
        print("zarrs is not installed (the fast extra: pip install 'volumetric[fast]'); skipped")
        return {}

    blocks = _blocks(args.tasks)
    mib = sum(b.nbytes for b in blocks) / 2**20
    times: dict[str, list[tuple[float, ...]]] = {name: [] for name in PIPELINES}
    with scratch_dir("codec", args) as scratch:
        paths = {name: scratch / f"{name}.zarr" for name in PIPELINES}
        for _ in range(args.rounds):
            for name in PIPELINES:
                times[name].append(_round(name, paths[name], blocks))
        identical = _chunk_files(paths["default"]) == _chunk_files(paths["zarrs"])
        cross = _cross_read(paths, blocks)
    medians = {name: [statistics.median(r[i] for r in runs) for i in range(4)]
               for name, runs in times.items()}
    results = {"mib": mib, "rounds": args.rounds, "load_average": list(os.getloadavg()),
               "identical_bytes": identical, "each_reads_the_other": cross,
               "pipelines": {name: {"write_mib_s": mib / m[0], "write_cpu_mib_s": mib / m[1],
                                    "read_mib_s": mib / m[2], "read_cpu_mib_s": mib / m[3]}
                             for name, m in medians.items()}}
    d, z = results["pipelines"]["default"], results["pipelines"]["zarrs"]
    results["ratios_zarrs_over_default"] = {k: z[k] / d[k] for k in d}
    rows = [(name, *(f"{p[k]:.0f}" for k in ("write_mib_s", "write_cpu_mib_s", "read_mib_s",
                                              "read_cpu_mib_s")))
            for name, p in results["pipelines"].items()]
    rows.append(("zarrs / default", *(f"{v:.2f}x" for v in
                                       results["ratios_zarrs_over_default"].values())))
    report("codec", results, rows, ("pipeline", "write MiB/s", "write MiB/CPU s", "read MiB/s",
                                    "read MiB/CPU s"))
    print(f"stored bytes identical: {identical}; each pipeline reads the other's: {cross}")
    return results


if __name__ == "__main__":
    main()
