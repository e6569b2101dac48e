"""``vol predict`` against MONAI's ``sliding_window_inference`` on the whole volume.

Same small 3D U-Net (TorchScript), same volumes, same window, overlap and
Gaussian blending. Each side runs in its own subprocess; the parent samples
the resident memory of that subprocess and all its children (the dask
scheduler, nannies and workers of the embedded cluster) and keeps the peak.

Cases (64^3 windows, overlap 0.25, 64^3 chunks):

- ``dense``: a 64 x 512 x 512 volume and the same grown 4x (y and x
  doubled). Time ratio vol / MONAI (target <= 1.1), and peak RSS of each
  side (vol's should stay flat, MONAI's grows with the volume). The smaller
  volume already has as many chunks as the input statistics sample and
  unshrunk default blocks, so vol's memory is at its steady state.
- ``sparse``: the larger volume with about 2 % of its 64^3 cubes listed (a
  "neurite" along x); vol runs with ``--cubes``, MONAI on the whole volume
  (the dense runs; target: vol >= 10x faster).

Each side runs ``--repeats`` times per case, alternating with the other, and
the fastest run counts (the peak RSS is the highest seen). Every case
reports window evaluations / the minimum (MONAI's window count;
for the sparse case the windows touching a listed cube), target 1.00, and
the largest difference from MONAI's result (over the listed cubes for the
sparse case).

When torch sees a CUDA GPU, a ``gpu`` case also runs both sides on it over
the larger volume (vol on an embedded cluster with one GPU worker, batch
``--gpu-batch``), in full precision and with autocast (``--amp``, bf16 by
default): voxels/s of each side, the share of that same timed interval the
GPU was busy (``utilization.gpu`` sampled by ``nvidia-smi`` every 100 ms
inside the child, around the timed call only; null, with a note, where
nvidia-smi is missing) and the largest difference from MONAI's
full-precision output. ``--gpu-only`` runs that case alone (a short session
on a lent GPU); ``--gpu-device cpu`` runs the same case on the CPU, to try
it where no GPU is.

Run: ``python -m benchmarks.predict [--quick] [--repeats N] [--gpu-only] [--dir D] [--keep]``;
results also go to ``benchmarks/out/predict.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import add_scratch_options, report, run_measured, scratch_dir
from volumetric.kernels.inference import AMP_DTYPES

WINDOW = (64, 64, 64)
OVERLAP = 0.25
CUBE = 64


def unet() -> Any:
    """The built-in 3D U-Net, small: depth 2, 8 features, sigmoid output."""
    import torch

    from volumetric.models.unet import unet3d

    torch.manual_seed(0)
    return unet3d(depth=2, features=8, output_activation="sigmoid").eval()


def make_volume(path: Path, shape: tuple[int, ...]) -> str:
    """Smooth random intensities as an OME-Zarr image with 64^3 chunks."""
    import zarr
    from scipy import ndimage

    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

    create_image(path, ImageMeta("zyx", (1.0, 1.0, 1.0), "micrometer"),
                 [LevelSpec("0", shape, (1, 1, 1))], dtype="uint16", chunks=(64, 64, 64))
    array = zarr.open_array(str(path / "0"), mode="r+")
    rng = np.random.default_rng(0)
    for z in range(0, shape[0], 64):
        slab = rng.normal(size=(min(64, shape[0] - z), *shape[1:]))
        array[z:z + 64] = (ndimage.gaussian_filter(slab, 2) * 4000 + 10000).astype(np.uint16)
    finalize_image(path)
    return str(path)


def neurite_cubes(shape: tuple[int, ...], fraction: float = 0.02) -> list[tuple[int, ...]]:
    """About ``fraction`` of the cubes, contiguous along x through the middle of the volume."""
    grid = [-(-s // CUBE) for s in shape]
    count = max(1, round(fraction * np.prod(grid)))
    return [(grid[0] // 2, grid[1] // 2, (grid[2] - count) // 2 + i) for i in range(count)]


def minimum_windows(shape: tuple[int, ...], cubes: list[tuple[int, ...]] | None) -> int:
    """Windows MONAI places that a correct run must evaluate (touching a cube, if cubes)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    interval = _get_scan_interval(shape, WINDOW, 3, (OVERLAP,) * 3)
    slices = dense_patch_slices(shape, WINDOW, interval)
    if cubes is None:
        return len(slices)

    def touches(sl: tuple[slice, ...]) -> bool:
        return any(all(s.start < (i + 1) * CUBE and s.stop > i * CUBE for s, i in zip(sl, cube))
                   for cube in cubes)

    return sum(touches(sl) for sl in slices)


class GpuBusy:
    """Share of time the GPU is busy while the block runs (``nvidia-smi``, every 100 ms).

    ``share`` stays None, with a ``note`` saying why, when nvidia-smi cannot
    be run or gives no sample.
    """

    def __enter__(self) -> GpuBusy:
        self.share: float | None = None
        self.samples = 0
        self.note: str | None = None
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        try:
            self.proc: subprocess.Popen[str] | None = subprocess.Popen(
                ["nvidia-smi", "-i", gpu, "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError as exc:
            self.proc, self.note = None, f"nvidia-smi could not run ({exc})"
            return self
        self.proc.stdout.readline()  # the first sample is taken before the block starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        samples = []
        for line in self.proc.communicate()[0].split():
            try:
                samples.append(float(line))
            except ValueError:
                continue
        self.samples = len(samples)
        if samples:
            self.share = sum(samples) / (100 * len(samples))
        else:
            self.note = "nvidia-smi gave no utilization.gpu samples"

    def result(self) -> dict[str, Any]:
        return {"gpu_busy_share": None if self.share is None else round(self.share, 3),
                "gpu_busy_samples": self.samples, "gpu_busy_note": self.note}


def _timed_call(device: str, call: Any) -> tuple[dict[str, Any], Any]:
    """Time ``call()``; on CUDA, also the GPU busy share over exactly that interval."""
    busy = GpuBusy() if device == "cuda" else nullcontext()
    with busy:
        t0 = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, **(busy.result() if isinstance(busy, GpuBusy) else {})}, value


# -- the two sides, each run in a child process -------------------------------------------

def _warm(device: str) -> None:
    import torch

    import volumetric.ops.predict_tasks  # noqa: F401

    torch.zeros(1, device=device)  # the GPU's context, as MONAI's process has it before its clock


def child_vol(args: dict[str, Any]) -> dict[str, Any]:
    from distributed import Client

    from volumetric import PredictOptions, RunOptions, predict
    from volumetric.engine import local_cluster

    device = args.get("device", "cpu")
    gpus = 1 if device == "cuda" else 0
    with local_cluster(args["workers"], dashboard_address=":0", gpus=gpus) as cluster, \
            Client(cluster) as client:
        client.run(_warm, device)  # imports, as MONAI's process has them before its clock starts
        options = PredictOptions(args["model"], window=WINDOW, overlap=(OVERLAP,),
                                 blend="gaussian", normalize="zscore", cubes=args.get("cubes"),
                                 device=device, batch=args.get("batch", 1), amp=args.get("amp"))
        timing, report = _timed_call(device, lambda: predict(
            args["raw"], args["out"], options, run=RunOptions(client=client, progress=False)))
    return {**timing, "evaluations": report.evaluations, "windows": report.windows}


def child_monai(args: dict[str, Any]) -> dict[str, Any]:
    import torch
    import zarr
    from monai.inferers import sliding_window_inference

    from volumetric.io.intensity import intensity_stats
    from volumetric.kernels.inference import autocast_for
    from volumetric.kernels.normalize import normalize

    device = args.get("device", "cpu")
    torch.set_num_threads(args["workers"])
    model = torch.jit.load(args["model"], map_location=device)
    array = zarr.open_array(f"{args['raw']}/0", mode="r")
    data = array[:]

    def run() -> Any:
        x = normalize(data, intensity_stats(array), "zscore")
        with torch.inference_mode(), autocast_for(device, args.get("amp")):
            out = sliding_window_inference(torch.from_numpy(x)[None, None].to(device), WINDOW,
                                           args.get("batch", 1), model, overlap=OVERLAP,
                                           mode="gaussian")
            return out.float().cpu()

    timing, out = _timed_call(device, run)
    np.save(args["out"], out[0].numpy())
    return timing


def run_child(side: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one side in a subprocess; add the peak RSS of its whole process tree."""
    measured = run_measured([sys.executable, "-m", "benchmarks.predict", "--child", side,
                             json.dumps(args)])
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = round(measured.peak_rss_mib, 1)
    return result


def gpu_case(folder: Path, raw: str, model: str, batch: int, device: str,
             amp: str) -> dict[str, Any]:
    """vol and MONAI on ``device`` over ``raw``, in full precision and with ``amp``.

    Each precision gives voxels/s and GPU busy share of both sides, and the
    largest difference of each side from MONAI's full-precision output (none
    for MONAI's own full-precision run).
    """
    import torch
    import zarr

    voxels = float(np.prod(zarr.open_array(f"{raw}/0", mode="r").shape))
    reference = str(folder / "gpu-monai-fp32.npy")
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else device,
        "batch": batch, "precisions": {}}
    for precision in (None, amp):
        name = precision or "fp32"
        common = {"raw": raw, "model": model, "workers": 1, "device": device, "batch": batch,
                  "amp": precision}
        vol_out, monai_out = folder / f"gpu-{name}.zarr", folder / f"gpu-monai-{name}.npy"
        shutil.rmtree(vol_out, ignore_errors=True)
        vol = run_child("vol", {**common, "out": str(vol_out)})
        monai = run_child("monai", {**common, "out": str(monai_out)})
        monai_diff = None if precision is None else float(  # fp32 is the reference itself
            np.abs(np.load(monai_out) - np.load(reference)).max())
        results["precisions"][name] = {
            "vol": vol, "monai": monai,
            "voxels_per_second_vol": round(voxels / vol["seconds"]),
            "voxels_per_second_monai": round(voxels / monai["seconds"]),
            "max_abs_difference_vol": max_difference(str(vol_out), reference, None),
            "max_abs_difference_monai": monai_diff,
        }
    return results


GPU_HEADER = ("device", "precision", "vol voxels/s", "MONAI voxels/s", "vol GPU busy",
              "MONAI GPU busy", "vol max diff", "MONAI max diff")


def gpu_rows(gpu: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per precision of the GPU case (differences from MONAI's fp32 output)."""
    return [(gpu["device"], name, f"{run['voxels_per_second_vol']:.3g}",
             f"{run['voxels_per_second_monai']:.3g}", busy_text(run["vol"]),
             busy_text(run["monai"]), f"{run['max_abs_difference_vol']:.1e}",
             "-" if run["max_abs_difference_monai"] is None
             else f"{run['max_abs_difference_monai']:.1e}")
            for name, run in gpu["precisions"].items()]


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of repeated runs, with the highest peak RSS seen and every time."""
    fastest = dict(min(runs, key=lambda r: r["seconds"]))
    fastest["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    fastest["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return fastest


def max_difference(vol_out: str, monai_out: str, cubes: list[tuple[int, ...]] | None) -> float:
    import zarr

    got = zarr.open_array(f"{vol_out}/0", mode="r")
    ref = np.load(monai_out, mmap_mode="r")
    if cubes is None:
        return float(np.abs(got[:] - ref).max())
    worst = 0.0
    for cube in cubes:
        index = (slice(None), *(slice(i * CUBE, (i + 1) * CUBE) for i in cube))
        worst = max(worst, float(np.abs(got[index] - ref[index]).max()))
    return worst


def busy_text(side: dict[str, Any]) -> str:
    if "gpu_busy_share" not in side:
        return "- (not CUDA)"
    if side["gpu_busy_share"] is None:
        return f"not measured: {side['gpu_busy_note']}"
    return f"{100 * side['gpu_busy_share']:.0f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller volumes (a smoke run).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2,
                        help="Runs of each side per case; the fastest counts (shared machines).")
    parser.add_argument("--gpu-batch", type=int, default=8, help="Windows per GPU batch.")
    parser.add_argument("--amp", choices=AMP_DTYPES, default="bf16",
                        help="Autocast dtype the GPU case compares with full precision.")
    gpu_choice = parser.add_mutually_exclusive_group()
    gpu_choice.add_argument("--no-gpu", action="store_true", help="Skip the GPU case.")
    gpu_choice.add_argument("--gpu-only", action="store_true",
                            help="Only the GPU case (results in benchmarks/out/predict_gpu.json).")
    parser.add_argument("--gpu-device", choices=("cuda", "cpu"), default="cuda",
                        help="Device of the GPU case; cpu tries the case where no GPU is.")
    add_scratch_options(parser)
    opts = parser.parse_args(argv)
    import torch

    run_gpu = not opts.no_gpu and (opts.gpu_device == "cpu" or torch.cuda.is_available())
    if opts.gpu_only and not run_gpu:
        parser.error("--gpu-only: torch sees no CUDA GPU "
                     "(--gpu-device cpu runs the case on the CPU)")
    base = (64, 192, 192) if opts.quick else (64, 512, 512)
    large = (base[0], base[1] * 2, base[2] * 2)
    cases = {} if opts.gpu_only else {
        "dense 1x": (base, False), "dense 4x": (large, False), "sparse 4x": (large, True)}
    results: dict[str, Any] = {"window": WINDOW, "overlap": OVERLAP, "workers": opts.workers,
                               "repeats": opts.repeats, "cpu_count": os.cpu_count(),
                               "load_average_at_start": os.getloadavg(), "cases": {}}
    with scratch_dir("predict", opts) as tmp:
        from volumetric.models.export import to_torchscript

        model = str(tmp / "unet.pt")
        torch.jit.save(to_torchscript(unet(), torch.zeros(1, 1, *WINDOW)), model)
        volumes: dict[tuple[int, ...], str] = {}

        def volume(shape: tuple[int, ...]) -> tuple[Path, str]:
            folder = tmp / "x".join(map(str, shape))
            if shape not in volumes:
                folder.mkdir()
                volumes[shape] = make_volume(folder / "raw.zarr", shape)
            return folder, volumes[shape]

        monai_results: dict[tuple[int, ...], dict[str, Any]] = {}
        for name, (shape, sparse) in cases.items():
            folder, raw = volume(shape)
            cubes = neurite_cubes(shape) if sparse else None
            common = {"raw": raw, "model": model, "workers": opts.workers}
            vol_args = {**common, "out": str(folder / f"{name.replace(' ', '-')}.zarr")}
            if cubes is not None:
                vol_args["cubes"] = str(folder / "cubes.json")
                Path(vol_args["cubes"]).write_text(json.dumps(
                    {"cube_shape": [CUBE] * 3, "cubes": [list(c) for c in cubes]}))
            vol_runs, monai_runs = [], []
            for _ in range(opts.repeats):  # alternated, so both sides see the same machine load
                shutil.rmtree(vol_args["out"], ignore_errors=True)
                vol_runs.append(run_child("vol", vol_args))
                if shape not in monai_results:  # the sparse case reuses the dense MONAI runs
                    monai_runs.append(run_child("monai", {**common,
                                                          "out": str(folder / "monai.npy")}))
            vol = best(vol_runs)
            monai = monai_results.setdefault(shape, best(monai_runs) if monai_runs else {})
            minimum = minimum_windows(shape, cubes)
            n_cubes = int(np.prod([-(-s // CUBE) for s in shape]))
            results["cases"][name] = {
                "shape": shape,
                "cubes": f"{len(cubes)}/{n_cubes}" if cubes else None,
                "vol": vol,
                "monai": monai,
                "time_ratio_vol_over_monai": round(vol["seconds"] / monai["seconds"], 3),
                "speedup_over_monai": round(monai["seconds"] / vol["seconds"], 2),
                "evaluations_over_minimum": round(vol["evaluations"] / minimum, 3),
                "voxels_per_second_vol": round(float(np.prod(shape)) / vol["seconds"]),
                "max_abs_difference": max_difference(vol_args["out"], f"{folder}/monai.npy", cubes),
            }
        if run_gpu:
            folder, raw = volume(large)
            results["gpu"] = gpu_case(folder, raw, model, opts.gpu_batch, opts.gpu_device,
                                      opts.amp)
    gpu = results.get("gpu")
    if opts.gpu_only:
        report("predict_gpu", results, gpu_rows(gpu), GPU_HEADER)
        return
    dense = results["cases"]
    results["rss_growth_4x"] = {
        side: round(dense["dense 4x"][side]["peak_rss_mib"] / dense["dense 1x"][side]["peak_rss_mib"], 3)
        for side in ("vol", "monai")
    }
    rows = [
        (name, "x".join(map(str, case["shape"])), case["cubes"] or "all",
         f"{case['vol']['seconds']:.1f}", f"{case['monai']['seconds']:.1f}",
         f"{case['time_ratio_vol_over_monai']:.3f}", f"{case['vol']['peak_rss_mib']:.0f}",
         f"{case['monai']['peak_rss_mib']:.0f}", f"{case['evaluations_over_minimum']:.2f}",
         f"{case['max_abs_difference']:.1e}")
        for name, case in results["cases"].items()
    ]
    report("predict", results, rows, ("case", "shape", "cubes", "vol s", "MONAI s", "vol/MONAI",
                                      "vol RSS MiB", "MONAI RSS MiB", "evals/min", "max diff"))
    growth = results["rss_growth_4x"]
    print(f"peak RSS growth for a 4x volume: vol {growth['vol']:.3f}x, MONAI {growth['monai']:.3f}x")
    if gpu:
        print(f"GPU case, over {'x'.join(map(str, large))} (busy: share of the timed run):")
        for row in [GPU_HEADER, *gpu_rows(gpu)]:
            print("  " + " | ".join(row))
    else:
        print("no CUDA GPU: GPU voxels/s and busy share not measured")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, payload = sys.argv[2], json.loads(sys.argv[3])
        print(json.dumps((child_vol if side == "vol" else child_monai)(payload)))
    else:
        main()
