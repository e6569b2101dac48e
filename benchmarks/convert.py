"""Convert a chunked HDF5 of >= 2 GiB to OME-Zarr: vol convert vs the naive baseline.

The naive baseline is what a script does today: read the whole dataset with
h5py, then write it with one zarr call (same chunks and codec). Both run in
fresh subprocesses on the same file; peak RSS is that of the whole process
tree (the dask scheduler and worker processes included). A third run adds a
pyramid level (``--levels 2``), whose tasks read the level below.

The floor is the bare work, for the ratio no converter can pass on this
machine: ``--workers`` forked processes that only read their share of the
HDF5 chunks, compress each with numcodecs' blosc in one thread and write it
to a file, with no zarr, dask or start-up of their own. Its files must hold
the very bytes of vol's chunks.

    python -m benchmarks.convert [--gib 2.0] [--workers 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import zarr

from benchmarks.measure import (
    Measurement,
    add_scratch_options,
    python_cmd,
    report,
    run_measured,
    scratch_dir,
)

CHUNKS = (64, 128, 128)

NAIVE = """
import h5py, zarr
from zarr.codecs import BloscCodec
with h5py.File({src!r}, "r") as f:
    data = f["raw"][:]
arr = zarr.create_array({dst!r}, shape=data.shape, chunks={chunks!r}, dtype=data.dtype,
                        compressors=BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"))
arr[:] = data
"""

FLOOR = """
import os
from multiprocessing import Pool
import h5py, numpy as np
from numcodecs import Blosc, blosc
SRC, DST, CHUNKS, WORKERS = {src!r}, {dst!r}, {chunks!r}, {workers!r}

def work(rows):
    blosc.use_threads = False
    codec = Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
    with h5py.File(SRC, "r") as f:
        for z, y in rows:
            slab = f["raw"][z:z + CHUNKS[0], y:y + CHUNKS[1]]
            folder = os.path.join(DST, "c", str(z // CHUNKS[0]), str(y // CHUNKS[1]))
            os.makedirs(folder, exist_ok=True)
            for x in range(0, slab.shape[2], CHUNKS[2]):
                with open(os.path.join(folder, str(x // CHUNKS[2])), "wb") as out:
                    out.write(codec.encode(np.ascontiguousarray(slab[..., x:x + CHUNKS[2]])))

if __name__ == "__main__":
    with h5py.File(SRC, "r") as f:
        depth, height = f["raw"].shape[:2]
    rows = [(z, y) for z in range(0, depth, CHUNKS[0]) for y in range(0, height, CHUNKS[1])]
    with Pool(WORKERS) as pool:
        pool.map(work, [rows[i::WORKERS] for i in range(WORKERS)])
"""


def make_source(path: Path, gib: float) -> tuple[int, ...]:
    """A chunked uint16 HDF5 volume of about ``gib`` GiB, written chunk by chunk."""
    side = 1536
    depth = -(-int(gib * 2**30 / (side * side * 2)) // CHUNKS[0]) * CHUNKS[0]
    shape = (depth, side, side)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side]
    ramp = ((yy + xx) % 512).astype(np.uint16)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("raw", shape=shape, dtype="uint16", chunks=CHUNKS)
        ds.attrs["element_size_um"] = [2.0, 0.5, 0.5]
        for z in range(0, depth, CHUNKS[0]):
            noise = rng.integers(0, 64, size=(CHUNKS[0], side, side), dtype=np.uint16)
            ds[z:z + CHUNKS[0]] = noise + ramp + np.uint16(100 + z)
    return shape


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="source size in GiB")
    parser.add_argument("--workers", type=int, default=2)
    add_scratch_options(parser)
    args = parser.parse_args(argv)

    with scratch_dir("convert", args) as scratch:
        src = scratch / "raw.h5"
        shape = make_source(src, args.gib)
        os.sync()  # the source's dirty pages written back now, not during the first run
        nbytes = int(np.prod(shape)) * 2
        mb = nbytes / 1e6

        naive = run_measured(python_cmd(NAIVE.format(src=str(src), dst=str(scratch / "naive.zarr"),
                                                     chunks=CHUNKS)))
        floor = run_measured(python_cmd(FLOOR.format(src=str(src), dst=str(scratch / "floor"),
                                                     chunks=CHUNKS, workers=args.workers)))
        def vol_convert(dst: str, *extra: str) -> Measurement:
            return run_measured([
                sys.executable, "-m", "volumetric_cli.main", "-q", "convert", str(src),
                str(scratch / dst), "--chunks", ",".join(map(str, CHUNKS)),
                "--workers", str(args.workers), *extra,
            ])

        vol = vol_convert("vol.zarr")
        pyramid = vol_convert("pyramid.zarr", "--levels", "2")
        naive_out = zarr.open_array(scratch / "naive.zarr")
        vol_out = zarr.open_array(scratch / "vol.zarr" / "0")
        same = naive_out.shape == vol_out.shape and all(
            np.array_equal(naive_out[z:z + CHUNKS[0]], vol_out[z:z + CHUNKS[0]])
            for z in range(0, shape[0], CHUNKS[0]))
        floor_dir, vol_chunks = scratch / "floor", scratch / "vol.zarr" / "0"
        floor_files = sorted(p for p in floor_dir.rglob("*") if p.is_file())
        chunk_count = int(np.prod([-(-s // c) for s, c in zip(shape, CHUNKS)]))
        floor_same = len(floor_files) == chunk_count and all(
            p.read_bytes() == (vol_chunks / p.relative_to(floor_dir)).read_bytes()
            for p in floor_files)
        results = {
            "source_shape": list(shape), "source_gib": nbytes / 2**30, "chunks": list(CHUNKS),
            "workers": args.workers,
            "naive": {"seconds": naive.seconds, "mb_per_s": mb / naive.seconds,
                      "cpu_seconds": naive.cpu_seconds, "peak_rss_mib": naive.peak_rss_mib},
            "vol": {"seconds": vol.seconds, "mb_per_s": mb / vol.seconds,
                    "cpu_seconds": vol.cpu_seconds, "peak_rss_mib": vol.peak_rss_mib},
            "floor": {"seconds": floor.seconds, "mb_per_s": mb / floor.seconds,
                      "cpu_seconds": floor.cpu_seconds, "peak_rss_mib": floor.peak_rss_mib},
            "vol_levels_2": {"seconds": pyramid.seconds, "mb_per_s": mb / pyramid.seconds,
                             "cpu_seconds": pyramid.cpu_seconds,
                             "peak_rss_mib": pyramid.peak_rss_mib},
            "load_average": os.getloadavg(),
            "throughput_ratio": naive.seconds / vol.seconds,
            "ceiling_ratio": naive.seconds / floor.seconds,
            "outputs_agree": bool(same),
            "floor_bytes_identical": bool(floor_same),
            "targets": {"throughput_ratio_at_least": 1.0, "vol_peak_rss_mib_below": 1024},
        }
        rows = [
            ("naive (h5py read all + zarr write)", f"{naive.seconds:.1f}", f"{mb / naive.seconds:.0f}",
             f"{naive.cpu_seconds:.1f}", f"{naive.peak_rss_mib:.0f}"),
            (f"vol convert ({args.workers} workers)", f"{vol.seconds:.1f}", f"{mb / vol.seconds:.0f}",
             f"{vol.cpu_seconds:.1f}", f"{vol.peak_rss_mib:.0f}"),
            (f"floor: read, compress, write ({args.workers} processes)", f"{floor.seconds:.1f}",
             f"{mb / floor.seconds:.0f}", f"{floor.cpu_seconds:.1f}", f"{floor.peak_rss_mib:.0f}"),
            (f"vol convert --levels 2 ({args.workers} workers)", f"{pyramid.seconds:.1f}",
             f"{mb / pyramid.seconds:.0f}", f"{pyramid.cpu_seconds:.1f}",
             f"{pyramid.peak_rss_mib:.0f}"),
        ]
        print(f"source: {shape} uint16, {nbytes / 2**30:.2f} GiB, HDF5 chunks {CHUNKS}")
        report("convert", results, rows, ("run", "seconds", "MB/s", "CPU s", "peak RSS MiB"))
        print(f"vol / naive throughput: {results['throughput_ratio']:.2f}x; outputs identical: {same}")
        print(f"ceiling (floor / naive): {results['ceiling_ratio']:.2f}x; "
              f"floor wrote vol's bytes: {floor_same}")
        return results


if __name__ == "__main__":
    main()
