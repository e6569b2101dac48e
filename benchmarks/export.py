"""Export a big OME-Zarr volume to TIFF: vol export vs reading it whole and tifffile.imwrite.

The naive baseline is what a script does today: read the whole level-0
array into memory, then ``tifffile.imwrite(..., imagej=True)``. ``vol
export`` writes the same ImageJ hyperstack slab by slab. Both run in fresh
subprocesses on the same store; peak RSS is that of the process tree. The
two TIFFs are compared page by page afterwards.

    python -m benchmarks.export [--gib 2.0] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import tifffile
import zarr

from benchmarks.measure import (
    Measurement,
    add_scratch_options,
    python_cmd,
    report,
    run_measured,
    scratch_dir,
)

SIDE = 2048
CHUNKS = (64, 256, 256)

NAIVE = """
import tifffile, zarr
data = zarr.open_array({src!r}, mode="r")[:]
tifffile.imwrite({dst!r}, data, imagej=True, resolution=(2.0, 2.0),
                 metadata={{"axes": "ZYX", "spacing": 2.0, "unit": "micron"}})
"""


def make_source(path: Path, gib: float) -> tuple[int, ...]:
    """A uint16 OME-Zarr image of about ``gib`` GiB (noise on a ramp), written slab by slab."""
    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

    depth = max(1, int(gib * 2**30 / (SIDE * SIDE * 2)))
    shape = (depth, SIDE, SIDE)
    meta = ImageMeta(axes="zyx", voxel_size=(2.0, 0.5, 0.5), unit="micrometer")
    create_image(path, meta, [LevelSpec("0", shape, (1, 1, 1))], dtype=np.uint16, chunks=CHUNKS)
    arr = zarr.open_array(str(path / "0"), mode="r+")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    ramp = ((yy + xx) % 512).astype(np.uint16)
    for z in range(0, depth, CHUNKS[0]):
        n = min(CHUNKS[0], depth - z)
        arr[z:z + n] = rng.integers(0, 64, (n, SIDE, SIDE), dtype=np.uint16) + ramp + np.uint16(z)
    finalize_image(path)
    return shape


def same_pages(a: Path, b: Path) -> bool:
    """Whether two uncompressed TIFFs hold the same pixels (compared through memory maps)."""
    x, y = tifffile.memmap(a, mode="r"), tifffile.memmap(b, mode="r")
    return x.shape == y.shape and all(np.array_equal(x[i], y[i]) for i in range(len(x)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the volume")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    with scratch_dir("export", args) as scratch:
        src = scratch / "big.zarr"
        shape = make_source(src, args.gib)
        nbytes = int(np.prod(shape)) * 2
        naive_out, vol_out = scratch / "naive.tif", scratch / "vol.tif"
        naive = run_measured(python_cmd(NAIVE.format(src=str(src / "0"), dst=str(naive_out))))
        vol = run_measured([sys.executable, "-m", "volumetric_cli.main", "-q", "export",
                            str(src), str(vol_out), "--overwrite"])
        identical = same_pages(naive_out, vol_out)
        runs: dict[str, Measurement] = {"naive (read all + tifffile.imwrite)": naive,
                                        "vol export": vol}
        results = {
            "shape": shape, "gib": nbytes / 2**30, "cores": os.cpu_count(),
            "chunks": [min(c, s) for c, s in zip(CHUNKS, shape)],
            "identical_pixels": identical,
            "runs": {name: {"seconds": m.seconds, "mb_s": nbytes / 1e6 / m.seconds,
                            "cpu_seconds": m.cpu_seconds, "peak_rss_mib": m.peak_rss_mib}
                     for name, m in runs.items()},
            "speed_ratio_vol_over_naive": naive.seconds / vol.seconds,
            "rss_ratio_naive_over_vol": naive.peak_rss / vol.peak_rss,
        }
        rows = [(name, f"{m.seconds:.1f}", f"{nbytes / 1e6 / m.seconds:.0f}",
                 f"{m.cpu_seconds:.1f}", f"{m.peak_rss_mib:.0f}") for name, m in runs.items()]
        report("export", results, rows, ("run", "seconds", "MB/s", "CPU s", "peak RSS MiB"))
        print(f"{'x'.join(map(str, shape))} uint16 ({nbytes / 2**30:.2f} GiB), "
              f"identical pixels: {identical}")


if __name__ == "__main__":
    main()
