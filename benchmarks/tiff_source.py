"""TIFF input: `vol convert` of a multi-GB stack against tifffile's whole-file read.

For an uncompressed contiguous stack (memory-mapped by the source) and a
zlib-compressed one with one IFD per page (read strip-wise through
tifffile's Zarr store), this measures

- ``vol convert`` in a subprocess: wall time, throughput and the peak RSS of
  its whole process tree (client + scheduler + worker processes, sampled
  with psutil);
- the naive baseline: ``tifffile.imread`` of the whole file, then one
  ``zarr`` write (same chunks and compressor), also in a subprocess;
- one block read (64 x 256 x 256 voxels, in the middle) through
  :class:`~volumetric.io.sources.TiffSource` against reading the same
  pages whole with ``tifffile.imread(key=...)`` and cropping.

Run: ``python -m benchmarks.tiff_source [--gib 2] [--workdir DIR] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HEIGHT = WIDTH = 2048
BLOCK = (64, 256, 256)


def _pages(n: int):
    rng = np.random.default_rng(0)
    ramp = (np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)) // 16).astype(np.uint16)
    for z in range(n):
        yield ramp + rng.integers(0, 64, (HEIGHT, WIDTH), dtype=np.uint16) + np.uint16(z)


def write_inputs(folder: Path, pages: int) -> dict[str, Path]:
    """The two stacks, written page by page (never held in memory whole)."""
    import tifffile

    files = {"uncompressed contiguous": folder / f"stack_{pages}.tif",
             "zlib, one IFD per page": folder / f"stack_{pages}_zlib.tif"}
    shape = (pages, HEIGHT, WIDTH)
    partial = folder / "partial.tif"
    if not files["uncompressed contiguous"].exists():
        tifffile.imwrite(partial, _pages(pages), shape=shape, dtype="uint16", bigtiff=True)
        partial.rename(files["uncompressed contiguous"])
    if not files["zlib, one IFD per page"].exists():
        with tifffile.TiffWriter(partial, bigtiff=True) as tif:
            for page in _pages(pages):
                tif.write(page, compression="zlib", compressionargs={"level": 1}, rowsperstrip=64,
                          contiguous=False, metadata=None)
        partial.rename(files["zlib, one IFD per page"])
    return files


def measure(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``; wall seconds and peak RSS (bytes) summed over its process tree."""
    import psutil

    peak = 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return {"seconds": seconds, "peak_rss": peak}


NAIVE = """
import sys, tifffile, zarr
from volumetric.io.codecs import make_compressors
data = tifffile.imread(sys.argv[1])
out = zarr.create_array(sys.argv[2], shape=data.shape, dtype=data.dtype, chunks=(64, 128, 128),
                        compressors=make_compressors("blosc-zstd", data.dtype, 3), overwrite=True)
out[:] = data
"""


def block_read(path: Path, pages: int) -> dict[str, float]:
    """Seconds to read one block with the source, and with whole pages + crop."""
    import tifffile

    from volumetric.geometry import Box
    from volumetric.io.sources import TiffSource

    z0, y0, x0 = pages // 2 - BLOCK[0] // 2, HEIGHT // 2, WIDTH // 2
    box = Box((z0, y0, x0), (z0 + BLOCK[0], y0 + BLOCK[1], x0 + BLOCK[2]))
    source = TiffSource(str(path))
    t0 = time.perf_counter()
    ours = source.read(box)
    t1 = time.perf_counter()
    pages_read = tifffile.imread(path, key=range(z0, z0 + BLOCK[0]))
    whole = pages_read[:, y0:y0 + BLOCK[1], x0:x0 + BLOCK[2]]
    t2 = time.perf_counter()
    assert np.array_equal(ours, whole)
    return {"block_source_s": t1 - t0, "block_whole_pages_s": t2 - t1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of each input stack")
    parser.add_argument("--workdir", type=Path, default=None, help="where inputs are kept")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    pages = max(BLOCK[0], int(args.gib * 2**30 / (HEIGHT * WIDTH * 2)))
    workdir = args.workdir or Path(tempfile.gettempdir()) / "volumetric-bench-tiff"
    workdir.mkdir(parents=True, exist_ok=True)
    files = write_inputs(workdir, pages)
    nbytes = pages * HEIGHT * WIDTH * 2
    results = []
    for kind, path in files.items():
        row: dict[str, object] = {"input": kind, "gib": round(nbytes / 2**30, 2),
                                  "file_gib": round(os.path.getsize(path) / 2**30, 2)}
        row.update(block_read(path, pages))
        out = workdir / "out.zarr"
        vol = measure([sys.executable, "-m", "volumetric_cli.main", "-q", "convert", str(path),
                       str(out), "--overwrite", "--workers", str(args.workers)])
        naive = measure([sys.executable, "-c", NAIVE, str(path), str(workdir / "naive.zarr")])
        row.update({
            "vol_s": vol["seconds"], "vol_mib_s": nbytes / 2**20 / vol["seconds"],
            "vol_peak_rss_mib": vol["peak_rss"] / 2**20,
            "naive_s": naive["seconds"], "naive_peak_rss_mib": naive["peak_rss"] / 2**20,
            "rss_ratio_naive_over_vol": naive["peak_rss"] / vol["peak_rss"],
            "speed_ratio_vol_over_naive": naive["seconds"] / vol["seconds"],
        })
        results.append(row)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    print(f"\n{'input':26} {'GiB':>5} {'vol s':>7} {'MiB/s':>6} {'vol RSS':>8} {'naive s':>8} "
          f"{'naive RSS':>9} {'block ms':>9} {'pages ms':>9}")
    for r in results:
        print(f"{r['input']:26} {r['gib']:5.2f} {r['vol_s']:7.1f} {r['vol_mib_s']:6.0f} "
              f"{r['vol_peak_rss_mib']:7.0f}M {r['naive_s']:8.1f} {r['naive_peak_rss_mib']:8.0f}M "
              f"{1e3 * r['block_source_s']:9.1f} {1e3 * r['block_whole_pages_s']:9.1f}")


if __name__ == "__main__":
    main()
