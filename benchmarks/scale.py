"""Client memory of runs over many blocks: does the client grow with the empty blocks?

Each volume is virtual: an OME-Zarr image whose chunks are not stored
(Zarr reads them as the fill value) except a few along one "neurite", so a
volume of 10^5 blocks costs kilobytes of disk. For each size (``--blocks``,
counted in 128^3 prediction blocks) three commands run, each as ``vol`` in a
subprocess against a standing cluster of 2 workers (``vol cluster up``), so
the process measured is the client alone (peak RSS sampled every 50 ms):

- ``discover``: the cube search from one seed at the neurite's start
  (reads the neurite's cubes and their neighbours, never the empty bulk);
- ``predict --cubes``: the cube list found, predicted with a small 3D U-Net
  (only the blocks owning windows that touch a listed cube run);
- ``distance``: a clipped distance map of a mask of ``--distance-blocks``
  blocks (16^3 each, every block a task: the O(blocks) case, slow on a
  small machine, hence its own sizes).

The client's peak should not grow with the empty blocks: the sparse runs
hold only what the neurite touches, and a job of many blocks keeps a bounded
number of tasks in flight (two per task slot, ``volumetric.engine.batches``).

    python -m benchmarks.scale [--blocks 12500,100000] [--distance-blocks 2000,8000]
                               [--neurite 8] [--cases discover,predict,distance]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.measure import add_scratch_options, report, run_measured, scratch_dir

BLOCK = 128  # prediction block side (two 64^3 windows)
CUBE = 64  # chunk and cube side of the raw image
MASK_BLOCK = 16  # chunk and block side of the distance mask
THRESHOLD = 1000
VOL = [sys.executable, "-m", "volumetric_cli.main"]


def grid_for(blocks: int) -> tuple[int, int, int]:
    """Blocks per axis, near a cube, holding at least ``blocks`` blocks."""
    side = round(blocks ** (1 / 3))
    return (-(-blocks // (side * side)), side, side)


def virtual_raw(path: Path, grid: tuple[int, ...], neurite: int) -> tuple[int, ...]:
    """A uint16 image of ``grid`` 128^3 blocks, empty but for a bright line ``neurite``
    cubes long along x through its middle; returns the line's first voxel."""
    import zarr

    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

    shape = tuple(g * BLOCK for g in grid)
    create_image(path, ImageMeta("zyx", (1.0, 1.0, 1.0), "micrometer"),
                 [LevelSpec("0", shape, (1, 1, 1))], dtype="uint16", chunks=(CUBE,) * 3)
    array = zarr.open_array(str(path / "0"), mode="r+")
    z, y = (shape[0] // 2 + CUBE // 2, shape[1] // 2 + CUBE // 2)  # inside one row of cubes
    x0 = max(0, shape[2] // 2 - neurite * CUBE // 2)
    array[z - 1:z + 2, y - 1:y + 2, x0:x0 + neurite * CUBE] = 5000
    finalize_image(path)
    return (z, y, x0)


def virtual_mask(path: Path, blocks: int) -> int:
    """A uint8 mask of about ``blocks`` 16^3 blocks with one voxel set; returns its blocks."""
    import zarr

    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

    grid = grid_for(blocks)
    shape = tuple(g * MASK_BLOCK for g in grid)
    create_image(path, ImageMeta("zyx", (1.0, 1.0, 1.0), "micrometer"),
                 [LevelSpec("0", shape, (1, 1, 1))], dtype="uint8", chunks=(MASK_BLOCK,) * 3)
    zarr.open_array(str(path / "0"), mode="r+")[tuple(s // 2 for s in shape)] = 1
    finalize_image(path)
    return int(np.prod(grid))


def _vol(args: list[str]) -> dict:
    measured = run_measured([*VOL, "-q", *args], interval=0.05)
    return {"seconds": measured.seconds, "client_peak_rss_mib": measured.peak_rss_mib,
            "output": measured.stdout.strip()}


def _row(case: str, blocks: int, run: dict) -> tuple[str, ...]:
    return (case, str(blocks), f"{run['seconds']:.1f}", f"{run['client_peak_rss_mib']:.0f}",
            run["output"][:90])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default="12500,100000",
                        help="comma-separated sizes, in 128^3 prediction blocks")
    parser.add_argument("--distance-blocks", default="2000,8000",
                        help="comma-separated sizes of the distance runs, in 16^3 blocks")
    parser.add_argument("--neurite", type=int, default=8, help="cubes along the bright line")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cases", default="discover,predict,distance",
                        help="comma-separated runs (distance, every block a task, is the slow one)")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.blocks.split(",")]
    distance_sizes = [int(v) for v in args.distance_blocks.split(",")]
    cases = args.cases.split(",")

    import torch

    from benchmarks.predict import WINDOW, unet
    from volumetric.models.export import to_torchscript

    results: dict = {"workers": args.workers, "neurite_cubes": args.neurite, "runs": {}}
    rows = []
    with scratch_dir("scale", args) as scratch:
        os.environ["VOLUMETRIC_STATE"] = str(scratch / "state")  # for the vol subprocesses
        os.environ.pop("VOLUMETRIC_CLUSTER", None)
        model = str(scratch / "unet.pt")
        torch.jit.save(to_torchscript(unet(), torch.zeros(1, 1, *WINDOW)), model)
        subprocess.run([*VOL, "cluster", "up", "--workers", str(args.workers),
                        "--dashboard-address", ":0"], check=True, capture_output=True)
        address = json.loads((scratch / "state" / "cluster.json").read_text())["address"]
        try:
            for size in sizes if {"discover", "predict"} & set(cases) else []:
                grid = grid_for(size)
                blocks = int(np.prod(grid))
                raw = scratch / f"raw-{blocks}.zarr"
                seed = virtual_raw(raw, grid, args.neurite)
                cubes = scratch / f"cubes-{blocks}.json"
                run = {"grid": list(grid), "blocks": blocks}
                run["discover"] = _vol(  # always: predict needs its cube list
                    ["discover", str(raw), str(cubes), "--seed", ",".join(map(str, seed)),
                     "--threshold", str(THRESHOLD), "--cluster", address])
                if "predict" in cases:
                    run["predict"] = _vol(
                        ["predict", str(raw), str(scratch / f"pred-{blocks}.zarr"), "--model",
                         model, "--cubes", str(cubes), "--window", "64,64,64", "--overlap",
                         "0.25", "--block", f"{BLOCK},{BLOCK},{BLOCK}", "--normalize", "none",
                         "--device", "cpu", "--cluster", address])
                results["runs"][f"sparse {blocks}"] = run
                for case in ("discover", "predict"):
                    if case in run:
                        rows.append(_row(case, blocks, run[case]))
            for size in distance_sizes if "distance" in cases else []:
                mask = scratch / f"mask-{size}.zarr"
                blocks = virtual_mask(mask, size)
                run = {"blocks": blocks, "distance": _vol(
                    ["distance", str(mask), str(scratch / f"dist-{blocks}.zarr"), "--clip", "2",
                     "--block-mb", "0.001", "--cluster", address])}
                results["runs"][f"distance {blocks}"] = run
                rows.append(_row("distance", blocks, run["distance"]))
        finally:
            subprocess.run([*VOL, "cluster", "down"], capture_output=True)
        results["load_average"] = list(os.getloadavg())
        report("scale", results, rows, ("run", "blocks", "seconds", "client peak MiB", "output"))
    return results


if __name__ == "__main__":
    main()
