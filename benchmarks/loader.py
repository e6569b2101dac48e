"""Patch loader throughput and memory: lazy Zarr reads vs the same patches from NumPy in memory.

64^3 float32 patches (uint16 raw, normalised; uint8 labels) from a
blosc-zstd OME-Zarr with 64^3 chunks, through a torch DataLoader with 2
workers, without augmentation and with the full augmentation (every patch
flipped, turned, rotated, sheared, elastically deformed, noise and
intensity). The baseline reads exactly the same patches (same seed) from
NumPy arrays loaded into memory before the workers fork. Each run is a fresh
subprocess; peak RSS is that of its whole process tree (DataLoader workers
included), and CPU time per patch (parent and workers; less sensitive than
wall time to other load on the machine). The Zarr runs are repeated on a
volume 4x larger to check that memory stays flat.

    python -m benchmarks.loader [--side 256] [--patches 192] [--workers 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import add_scratch_options, report, run_measured, scratch_dir

PATCH = (64, 64, 64)
CHUNKS = (64, 64, 64)
AUGMENTATIONS = ("none", "full")


def make_volume(folder: Path, shape: tuple[int, int, int]) -> tuple[str, str]:
    """A uint16 raw volume with blobs and noise and its uint8 labels, written slab by slab."""
    import zarr
    from scipy import ndimage

    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

    meta = ImageMeta(axes="zyx", voxel_size=(1.0, 1.0, 1.0), unit="micrometer")
    paths = {}
    for name, dtype in (("raw", np.uint16), ("labels", np.uint8)):
        paths[name] = str(folder / f"{name}.zarr")
        create_image(paths[name], meta, [LevelSpec("0", shape, (1, 1, 1))], dtype=dtype,
                     chunks=CHUNKS)
    raw = zarr.open_array(paths["raw"] + "/0", mode="r+")
    labels = zarr.open_array(paths["labels"] + "/0", mode="r+")
    rng = np.random.default_rng(0)
    for z in range(0, shape[0], CHUNKS[0]):
        slab = ndimage.gaussian_filter(rng.random((CHUNKS[0], *shape[1:]), np.float32), 3)
        mask = slab > np.percentile(slab, 97)
        labels[z:z + CHUNKS[0]] = mask
        noise = rng.integers(0, 200, mask.shape, dtype=np.uint16)
        raw[z:z + CHUNKS[0]] = (mask * 2000 + 300 + noise).astype(np.uint16)
    for path in paths.values():
        finalize_image(path)
    return paths["raw"], paths["labels"]


def child(config: dict[str, Any]) -> None:
    """One measured run: iterate a DataLoader and print patches/s as JSON."""
    import torch

    from volumetric.kernels.augment import AugmentConfig
    from volumetric.train.dataset import PatchDataset, VolumePair

    class InMemoryPatchDataset(PatchDataset):
        """The same patches, sliced from NumPy arrays loaded into memory once."""

        def _array(self, pair: int, role: str) -> Any:
            memory = self.__dict__.setdefault("memory", {})
            if (pair, role) not in memory:
                memory[(pair, role)] = np.asarray(super()._array(pair, role)[...])
            return memory[(pair, role)]

    full = AugmentConfig(spatial_probability=1.0, intensity_probability=1.0)
    cls = InMemoryPatchDataset if config["source"] == "numpy" else PatchDataset
    ds = cls([VolumePair(config["raw"], config["target"])], PATCH,
             augment=full if config["augment"] == "full" else None,
             samples_per_epoch=config["patches"], seed=0)
    if config["source"] == "numpy":
        ds._array(0, "raw"), ds._array(0, "target")
    loader = torch.utils.data.DataLoader(ds, batch_size=config["batch"],
                                         num_workers=config["workers"])
    checksum, count, first = 0.0, 0, None
    cpu = os.times()
    for batch in loader:
        if first is None:  # worker start-up is not throughput
            first = time.perf_counter()
        else:
            count += len(batch["image"])
        checksum += float(batch["image"].sum()) + float(batch["target"].sum())
    seconds = time.perf_counter() - first
    del loader  # joins the workers, so their CPU time is counted below
    end = os.times()
    cpu_seconds = sum(end[i] - cpu[i] for i in range(4))  # user, system, children's user, system
    print(json.dumps({"patches_per_s": count / seconds, "checksum": checksum,
                      "cpu_ms_per_patch": 1000 * cpu_seconds / config["patches"]}))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="base volume: SIDE^3 voxels")
    parser.add_argument("--patches", type=int, default=192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    add_scratch_options(parser)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return {}

    with scratch_dir("loader", args) as scratch:
        side = args.side
        shapes = {"1x": (side, side, side), "4x": (side, 2 * side, 2 * side)}
        volumes = {}
        for size, shape in shapes.items():
            folder = scratch / size
            folder.mkdir(exist_ok=True)
            volumes[size] = make_volume(folder, shape)

        def run(source: str, augment: str, size: str) -> dict[str, Any]:
            raw, target = volumes[size]
            config = {"raw": raw, "target": target, "source": source, "augment": augment,
                      "patches": args.patches, "batch": args.batch, "workers": args.workers}
            m = run_measured([sys.executable, "-m", "benchmarks.loader", "--child",
                              json.dumps(config)])
            out = json.loads(m.stdout.strip().splitlines()[-1])
            return {"source": source, "augment": augment, "volume": size,
                    "shape": list(shapes[size]), "patches_per_s": out["patches_per_s"],
                    "cpu_ms_per_patch": out["cpu_ms_per_patch"],
                    "peak_rss_mib": m.peak_rss_mib, "checksum": out["checksum"]}

        runs = [run(source, augment, size)
                for augment in AUGMENTATIONS
                for source, size in (("numpy", "1x"), ("zarr", "1x"), ("zarr", "4x"))]
        by = {(r["source"], r["augment"], r["volume"]): r for r in runs}

        def ratios(key: str, top: tuple[str, str], bottom: tuple[str, str]) -> dict[str, float]:
            return {a: by[(top[0], a, top[1])][key] / by[(bottom[0], a, bottom[1])][key]
                    for a in AUGMENTATIONS}

        results = {
            "patch": list(PATCH), "chunks": list(CHUNKS), "workers": args.workers,
            "batch": args.batch, "patches": args.patches, "runs": runs,
            "zarr_over_numpy_throughput": ratios("patches_per_s", ("zarr", "1x"), ("numpy", "1x")),
            "zarr_over_numpy_cpu_per_patch": ratios("cpu_ms_per_patch", ("zarr", "1x"),
                                                    ("numpy", "1x")),
            "rss_growth_4x_volume": ratios("peak_rss_mib", ("zarr", "4x"), ("zarr", "1x")),
            "same_patches_as_numpy": all(
                np.isclose(by[("zarr", a, "1x")]["checksum"], by[("numpy", a, "1x")]["checksum"],
                           rtol=1e-9) for a in AUGMENTATIONS),
            "targets": {"rss_growth_at_most": 1.10},
        }
        rows = [(r["source"], r["augment"], "x".join(map(str, r["shape"])),
                 f"{r['patches_per_s']:.1f}", f"{r['cpu_ms_per_patch']:.1f}",
                 f"{r['peak_rss_mib']:.0f}") for r in runs]
        report("loader", results, rows, ("source", "augment", "volume", "patches/s",
                                         "CPU ms/patch", "peak tree RSS MiB"))
        for a in AUGMENTATIONS:
            print(f"augment {a}: zarr / numpy throughput "
                  f"{results['zarr_over_numpy_throughput'][a]:.2f}x, CPU per patch "
                  f"{results['zarr_over_numpy_cpu_per_patch'][a]:.2f}x, RSS 4x / 1x volume "
                  f"{results['rss_growth_4x_volume'][a]:.3f}")
        return results


if __name__ == "__main__":
    main()
