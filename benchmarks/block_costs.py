"""Per-block costs on one CPU core: the measured figures behind docs/scaling.md.

Everything runs in this process on one thread (torch's and blosc's), after
one untimed warm-up, and the best of ``--repeats`` timings counts. The data
are a synthetic neurite volume (:mod:`volumetric.testing.neurites`: Poisson
background of about 100 photons, uint16, and its mask), written as OME-Zarr
with 64^3 chunks and the default codec (blosc zstd, shuffle).

- ``read``/``write``: a 128^3 uint16 block (8 chunks) decoded from, or
  encoded into, the Zarr store, and the compression ratio;
- ``distance``: the clipped distance map (10 um, voxel 2 x 1 x 1 um) of one
  128^3 block from its padded read, for a block holding neurite and for an
  empty one (no chunk stored; its read only proves it empty);
- ``count``: counting the voxels above a threshold in one 64^3 cube
  (``vol discover``), read included;
- ``window``: one 64^3 window through a 3D U-Net (batch 1 and 4), for the
  small network of ``benchmarks.predict`` and a larger one (depth 4, 32
  features), with the floating-point operations of a window counted by
  torch's ``FlopCounterMode``; and the blending of a window's output;
- ``partials``: the bytes a dense prediction block (128^3, 64^3 windows,
  overlap 0.25) keeps as scratch between its two phases, the time to save
  and load them (local disk), and the time to write a 128^3 prediction
  (the neurite block's mask, smoothed: a probability map) as float32 and
  as uint8.

    python -m benchmarks.block_costs [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.measure import add_scratch_options, report, scratch_dir

BLOCK = 128
CUBE = 64
VOXEL = (2.0, 1.0, 1.0)
CLIP = 10.0


def best(call: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls, after one untimed call."""
    call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def _volume(scratch: Path) -> tuple[str, str, tuple[int, ...]]:
    """A 256^3 neurite raw image and its mask as OME-Zarr arrays; their paths and a block
    start (z, y, x) whose padded read holds neurite."""
    import zarr

    from volumetric.geometry import Box
    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image
    from volumetric.testing.neurites import neurites

    volume = neurites((256, 256, 256), voxel_size=VOXEL, seed=0)
    raw, mask = volume.render(Box((0, 0, 0), (256, 256, 256)))
    paths = []
    for name, data in (("raw", raw), ("mask", mask)):
        path = scratch / f"{name}.zarr"
        create_image(path, ImageMeta("zyx", VOXEL, "micrometer"),
                     [LevelSpec("0", data.shape, (1, 1, 1))], dtype=data.dtype,
                     chunks=(CUBE,) * 3)
        zarr.open_array(str(path / "0"), mode="r+")[...] = data
        finalize_image(path)
        paths.append(str(path / "0"))
    occupied = max(((z, y, x) for z in (0, 128) for y in (0, 128) for x in (0, 128)),
                   key=lambda s: int(mask[s[0]:s[0] + BLOCK, s[1]:s[1] + BLOCK,
                                          s[2]:s[2] + BLOCK].sum()))
    return paths[0], paths[1], occupied


def _io(raw: str, scratch: Path, repeats: int) -> dict:
    import zarr

    array = zarr.open_array(raw, mode="r")
    block = array[:BLOCK, :BLOCK, :BLOCK]
    copy = zarr.create_array(str(scratch / "copy.zarr"), shape=array.shape, chunks=array.chunks,
                             dtype=array.dtype, compressors=array.compressors)
    stored = sum(f.stat().st_size for f in Path(raw).rglob("c/*/*/*"))
    return {
        "read_s": best(lambda: array[:BLOCK, :BLOCK, :BLOCK], repeats),
        "write_s": best(lambda: copy.__setitem__((slice(0, BLOCK),) * 3, block), repeats),
        "block_bytes": block.nbytes,
        "compression_ratio": array.nbytes / stored,
    }


def _prediction_io(mask: str, occupied: tuple[int, ...], scratch: Path, repeats: int) -> dict:
    """Writing a 128^3 prediction block (float32 and uint8) and a block's scratch round trip.

    The prediction is what a good model gives for the neurite block: the
    mask, smoothed (a probability near 1 on the neurites, 0 elsewhere).
    """
    import zarr
    from scipy import ndimage

    box = tuple(slice(s, s + BLOCK) for s in occupied)
    truth = zarr.open_array(mask, mode="r")[box].astype(np.float32)
    probability = np.clip(ndimage.gaussian_filter(truth, 1.0) * 2, 0, 1).astype(np.float32)
    out = {}
    for dtype, data in (("float32", probability), ("uint8", np.round(probability * 255))):
        array = zarr.create_array(str(scratch / f"pred-{dtype}.zarr"), shape=data.shape,
                                  chunks=(CUBE,) * 3, dtype=dtype)
        block = data.astype(dtype)
        out[f"write_{dtype}_s"] = best(lambda: array.__setitem__(Ellipsis, block), repeats)
        stored = sum(f.stat().st_size for f in (scratch / f"pred-{dtype}.zarr").rglob("c/*/*/*"))
        out[f"{dtype}_compression_ratio"] = block.nbytes / stored
    sums = np.zeros((2, 144, 144, 144), np.float32)  # a block's region: sums and weights
    path = scratch / "partial.npy"

    def round_trip() -> None:
        np.save(path, sums)
        float(np.load(path, mmap_mode="r")[:, :BLOCK, :BLOCK, :BLOCK].sum())

    out["scratch_round_trip_s"] = best(round_trip, repeats)
    out["scratch_bytes"] = sums.nbytes
    return out


def _distance(mask: str, occupied: tuple[int, ...], repeats: int) -> dict:
    import zarr

    from volumetric.kernels.edt_clip import distance_map, empty_value, shape_distance

    array = zarr.open_array(mask, mode="r")
    halo = tuple(int(np.ceil(CLIP / v)) for v in VOXEL)

    def block(start: tuple[int, ...]) -> None:
        lo = [max(0, s - h) for s, h in zip(start, halo)]
        hi = [min(n, s + BLOCK + h) for s, h, n in zip(start, halo, array.shape)]
        data = array[tuple(slice(a, b) for a, b in zip(lo, hi))] != 0
        if empty_value(data, "foreground") is not None:
            return
        inner = tuple(slice(s - a, s - a + BLOCK) for s, a in zip(start, lo))
        shape_distance(distance_map(data, VOXEL)[inner], clip=CLIP, power=None,
                       scale_to_clip=False)

    occupied_s = best(lambda: block(occupied), repeats)
    empty = zarr.create_array(f"{mask}-empty", shape=array.shape, chunks=array.chunks,
                              dtype=array.dtype)  # no chunk stored, as in a sparse mask's bulk
    array = empty
    return {"occupied_block_s": occupied_s, "empty_block_s": best(lambda: block((0, 0, 0)),
                                                                  repeats)}


def _count(raw: str, repeats: int) -> dict:
    import zarr

    array = zarr.open_array(raw, mode="r")
    return {"cube_s": best(lambda: int((array[:CUBE, :CUBE, :CUBE] > 200).sum()), repeats)}


def _windows(repeats: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.predict import unet
    from volumetric.geometry import Box
    from volumetric.kernels.blending import Accumulator, window_weights
    from volumetric.models.unet import unet3d

    torch.manual_seed(0)
    networks = {"small (depth 2, 8 features)": unet(),
                "larger (depth 4, 32 features)": unet3d(depth=4, features=32).eval()}
    out = {}
    for name, net in networks.items():
        x1, x4 = torch.zeros(1, 1, CUBE, CUBE, CUBE), torch.zeros(4, 1, CUBE, CUBE, CUBE)
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                net(x1)
            out[name] = {
                "parameters": sum(p.numel() for p in net.parameters()),
                "flops_per_window": counter.get_total_flops(),
                "batch1_window_s": best(lambda: net(x1), repeats),
                "batch4_window_s": best(lambda: net(x4), repeats) / 4,
            }
    weights = window_weights((CUBE,) * 3, "gaussian")
    acc = Accumulator(Box((0, 0, 0), (160, 160, 160)), 1, weights)
    output = torch.zeros(1, 1, CUBE, CUBE, CUBE)
    out["blend_window_s"] = best(lambda: acc.add(output, [(16, 16, 16)]), repeats)
    return out


def _partials() -> dict:
    from volumetric.geometry import BlockGrid
    from volumetric.windows import WindowGrid, WindowPlan

    shape = (1024, 1024, 1024)
    plan = WindowPlan(WindowGrid(shape, (CUBE,) * 3, (0.25,)), BlockGrid(shape, (BLOCK,) * 3))
    inner = [i for i in plan.blocks.indices() if all(0 < a < 7 for a in i)]
    voxels = np.mean([plan.region_of(i).size for i in inner])
    windows = np.mean([len(plan.windows_of(i)) for i in inner])
    return {"windows_per_block": float(windows), "region_voxels": float(voxels),
            "scratch_bytes_per_block_1_channel": float(voxels * 2 * 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    import numcodecs
    import torch

    torch.set_num_threads(1)
    numcodecs.blosc.set_nthreads(1)
    with scratch_dir("block_costs", args) as scratch:
        raw, mask, occupied = _volume(scratch)
        results = {"io": _io(raw, scratch, args.repeats),
                   "prediction_io": _prediction_io(mask, occupied, scratch, args.repeats),
                   "distance": _distance(mask, occupied, args.repeats),
                   "count": _count(raw, args.repeats), "windows": _windows(args.repeats),
                   "partials": _partials(), "load_average": list(os.getloadavg())}
    io, dist, win = results["io"], results["distance"], results["windows"]
    mib = io["block_bytes"] / 2**20
    rows = [("read 128^3 uint16 block", f"{io['read_s'] * 1e3:.1f}",
             f"{mib / io['read_s']:.0f} MiB/s, ratio {io['compression_ratio']:.2f}"),
            ("write 128^3 uint16 block", f"{io['write_s'] * 1e3:.1f}",
             f"{mib / io['write_s']:.0f} MiB/s"),
            ("distance, occupied 128^3 block", f"{dist['occupied_block_s'] * 1e3:.1f}", ""),
            ("distance, empty 128^3 block", f"{dist['empty_block_s'] * 1e3:.1f}", ""),
            ("count one 64^3 cube", f"{results['count']['cube_s'] * 1e3:.1f}", "")]
    for name, w in win.items():
        if isinstance(w, dict):
            rows.append((f"window 64^3, {name}", f"{w['batch1_window_s'] * 1e3:.1f}",
                         f"batch 4: {w['batch4_window_s'] * 1e3:.1f} ms/window, "
                         f"{w['flops_per_window'] / 1e9:.1f} GFLOP, {w['parameters']} params"))
    rows.append(("blend one window", f"{win['blend_window_s'] * 1e3:.1f}", ""))
    pio = results["prediction_io"]
    for dtype in ("float32", "uint8"):
        rows.append((f"write a 128^3 {dtype} prediction block", f"{pio[f'write_{dtype}_s'] * 1e3:.1f}",
                     f"compression ratio {pio[f'{dtype}_compression_ratio']:.1f}"))
    rows.append(("scratch of a block: save and load", f"{pio['scratch_round_trip_s'] * 1e3:.1f}",
                 f"{pio['scratch_bytes'] / 2**20:.1f} MiB, local disk, page cache warm"))
    p = results["partials"]
    rows.append(("dense predict block: windows, scratch", "",
                 f"{p['windows_per_block']:.1f} windows, "
                 f"{p['scratch_bytes_per_block_1_channel'] / 2**20:.1f} MiB"))
    report("block_costs", results, rows, ("per block (one core)", "ms", "notes"))
    return results


if __name__ == "__main__":
    main()
