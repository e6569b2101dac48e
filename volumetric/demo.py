"""The demo behind ``make demo``: the whole pipeline on a synthetic neurite volume.

Runs every stage on one embedded LocalCluster (its dashboard link is printed
first), writing into one folder; draws ``summary.png`` (raw projection,
prediction, overlay, training curves), then prints a table of the stages,
where every output is and how to look at it::

    python -m volumetric.demo demo-out [--shape 128,256,256] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from volumetric.engine import RunOptions, connect

SUMMARY = "summary.png"
# (output, what it holds, whether the napari line opens it: the images worth a look together)
OUTPUTS = (
    ("neurites.h5", "the synthetic input: datasets raw and mask (HDF5)", False),
    ("neurites.swc", "the neurites' traced skeleton (SWC)", False),
    ("raw.zarr", "raw image with a 3-level pyramid", True),
    ("mask.zarr", "ground-truth mask", True),
    ("cubes.json", "cubes holding neurites, found from the skeleton (vol discover)", False),
    ("distance.zarr", "training target: distance to the neurites, clipped and scaled to 0..1",
     False),
    ("rendered.zarr", "the skeleton drawn as tubes on raw's grid (vol render)", False),
    ("mip.zarr", "maximum projection of raw along z", False),
    ("mip.png", "the same projection as a picture", False),
    ("run", "training run: config.json, metrics.csv, curves.png, model.pt, model.ts", False),
    ("prediction.zarr", "predicted distance (0 on a neurite, 1 far), only in the cubes", True),
    ("overlay.zarr", "raw and prediction in one uint16 image (for Vaa3D)", False),
    (SUMMARY, "raw projection, prediction, overlay and training curves: open this first",
     False),
)


def write_summary(out: Path) -> Path:
    """Draw ``OUT/summary.png`` from the demo's raw image, prediction and training metrics.

    Parameters
    ----------
    out : Path
        The demo's folder, holding ``raw.zarr``, ``prediction.zarr`` (a
        distance prediction clipped at 1) and ``run/metrics.csv``.

    Returns
    -------
    Path
        The PNG: four panels side by side.
    """
    from volumetric import plots

    raw = plots.project(plots.read_volume(out / "raw.zarr"))
    near = 1 - plots.project(plots.read_volume(out / "prediction.zarr"), "min")
    with open(out / "run" / "metrics.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                   for row in csv.DictReader(f)]
    # the overlay keeps what the prediction places within about 1 micrometre of a neurite
    fig = plots.summary_figure(raw, near, history, overlay=near**4,
                               structure_title="prediction: 1 - distance, minimum along z")
    return plots.save_figure(fig, out / SUMMARY)


def viewing_guide(out: Path) -> str:
    """Where each output of the demo in ``out`` is, and how to look at it (the lines printed)."""
    found = [(name, what, shown) for name, what, shown in OUTPUTS if (out / name).exists()]
    width = max((len(name) for name, _, _ in found), default=0) + len(str(out)) + 1
    lines = [f"outputs in {out}/:"]
    lines += [f"  {str(out / name).ljust(width)}  {what}" for name, what, _ in found]
    images = " ".join(str(out / name) for name, _, shown in found if shown)
    lines += [
        "",
        "how to look at them:",
        f"  the summary:  open {out / SUMMARY}  (any image viewer)",
        "  napari:       pip install 'volumetric[viewer]'   (napari with napari-ome-zarr), then",
        f"                napari {images}",
        "  neuroglancer: serve the folder with CORS, e.g. "
        f"`npx http-server {out} --cors -p 8000`, and add the layer",
        "                zarr://http://localhost:8000/raw.zarr (likewise prediction.zarr ...)",
        f"  on the command line: vol info {out / 'raw.zarr'}",
    ]
    return "\n".join(lines)


def _stages(out: Path, shape: tuple[int, ...], client: Any) -> list[tuple[str, Callable[[], str]]]:
    """(name, run) pairs; each run returns a one-line result for the summary."""
    import numpy as np
    import zarr

    from volumetric.ops.convert import convert
    from volumetric.ops.discover import discover
    from volumetric.ops.distance import distance
    from volumetric.ops.evaluate import evaluate
    from volumetric.ops.info import image_info
    from volumetric.ops.overlay import overlay
    from volumetric.ops.predict import predict
    from volumetric.ops.predict_plan import PredictOptions
    from volumetric.ops.project import project
    from volumetric.ops.render import render
    from volumetric.ops.train import DataSettings, ModelChoice, train
    from volumetric.testing.neurites import neurites, write_neurites
    from volumetric.train import TrainSettings

    h5 = out / "neurites.h5"
    common = {"chunks": (32, 64, 64),
              "run": RunOptions(client=client, overwrite=True, block_bytes=2**20)}

    def synth() -> str:
        _, swc, fraction = write_neurites(h5, neurites(shape, voxel_size=(1.0, 0.5, 0.5), seed=7),
                                          chunks=(32, 64, 64), overwrite=True)
        return f"{h5.name} + {swc.name}, {fraction:.2%} foreground"

    def convert_raw() -> str:
        report = convert(str(h5), str(out / "raw.zarr"), dataset="raw", levels=3, **common)
        info = image_info(str(out / "raw.zarr"))
        return (f"raw.zarr {info['shape']} {info['dtype']}, {len(info['levels'])} levels, "
                f"compression {info['compression_ratio']:.1f}x, {report.seconds:.1f} s")

    def convert_mask() -> str:
        convert(str(h5), str(out / "mask.zarr"), dataset="mask", **common)
        return "mask.zarr"

    def discover_cubes() -> str:
        cubes = discover(str(out / "mask.zarr"), str(out / "cubes.json"),
                         seeds_swc=str(h5.with_suffix(".swc")), min_voxels=20,
run=RunOptions(client=client, overwrite=True))
        total = int(np.prod(cubes.grid.grid_shape))
        return (f"cubes.json: {len(cubes.cubes)} of {total} cubes kept, "
                f"{cubes.info['cubes_read']} read")

    def distance_map() -> str:
        distance(str(out / "mask.zarr"), str(out / "distance.zarr"), clip=5.0, scale_to_clip=True,
                 run=RunOptions(client=client, overwrite=True))
        return "distance.zarr: distance to the neurites, clipped at 5 micrometers, normalised"

    def train_unet() -> str:
        data = DataSettings(str(out / "raw.zarr"), str(out / "distance.zarr"), patch=(16, 32, 32),
                            sampler="foreground", foreground="<0.3", augment=False,
                            cubes=str(out / "cubes.json"), val_fraction=0.25, val_patches=8,
                            steps_per_epoch=50)
        settings = TrainSettings(loss="mse", lr=0.005, batch=4, epochs=4, steps=200)
        model = ModelChoice("unet3d", {"depth": 2, "features": 8})
        report = train(data, out / "run", model=model, settings=settings)
        best = report.result.history[report.result.best_epoch - 1]
        return (f"run/: 3D U-Net, {report.result.steps} steps, val MSE {best['val_loss']:.4f}, "
                "model.ts + curves.png")

    def predict_cubes() -> str:
        options = PredictOptions(str(out / "run" / "model.ts"), cubes=str(out / "cubes.json"),
                                 window=(32, 64, 64), overlap=(0.25,), clip=1.0)
        report = predict(str(out / "raw.zarr"), str(out / "prediction.zarr"), options,
                         run=RunOptions(client=client, overwrite=True))
        return (f"prediction.zarr: {report.evaluations} windows, each evaluated once, "
                "only in discovered cubes")

    def overlay_raw() -> str:
        overlay(str(out / "raw.zarr"), str(out / "prediction.zarr"), str(out / "overlay.zarr"),
                clip=1.0, run=RunOptions(client=client, overwrite=True))
        return "overlay.zarr: uint16 raw + prediction overlay for Vaa3D"

    def evaluate_prediction() -> str:
        scores = evaluate(str(out / "prediction.zarr"), str(out / "mask.zarr"), threshold=0.2,
                          below=True, run=RunOptions(client=client))
        return (f"Dice {scores['dice']:.3f}, precision {scores['precision']:.3f}, "
                f"recall {scores['recall']:.3f} (prediction < 0.2 vs ground truth)")

    def render_swc() -> str:
        render(str(h5.with_suffix(".swc")), str(out / "raw.zarr"), str(out / "rendered.zarr"),
               run=RunOptions(client=client, overwrite=True))
        drawn = zarr.open_array(out / "rendered.zarr" / "0")[:] > 0
        truth = zarr.open_array(out / "mask.zarr" / "0")[:] > 0
        dice = 2 * np.count_nonzero(drawn & truth) / (drawn.sum() + truth.sum())
        return f"rendered.zarr: SWC drawn on raw's grid, Dice {dice:.3f} against the mask"

    def project_raw() -> str:
        project(str(out / "raw.zarr"), str(out / "mip.zarr"), png=str(out / "mip.png"),
                run=RunOptions(client=client, overwrite=True))
        return "mip.zarr + mip.png: maximum projection along z"

    def summary() -> str:
        return f"{write_summary(out).name}: raw, prediction, overlay, training curves"

    return [
        ("synthesize", synth), ("convert raw", convert_raw), ("convert mask", convert_mask),
        ("discover", discover_cubes), ("distance", distance_map), ("render", render_swc),
        ("project", project_raw), ("train", train_unet), ("predict", predict_cubes),
        ("overlay", overlay_raw), ("evaluate", evaluate_prediction), ("summary", summary),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volumetric.demo", description=__doc__)
    parser.add_argument("out", type=Path, help="folder for every output (replaced)")
    parser.add_argument("--shape", default="128,256,256", help="synthetic volume z,y,x")
    parser.add_argument("--workers", type=int, default=None, help="worker processes")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    summary = []
    t_all = time.monotonic()
    with connect(workers=args.workers) as client:
        for name, run in _stages(args.out, shape, client):
            print(f"\n== {name}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            result = run()
            summary.append((name, time.monotonic() - t0, result))
    print(f"\nvolumetric demo: {shape} voxels, outputs in {args.out}/")
    width = max(len(n) for n, _, _ in summary)
    for name, seconds, result in summary:
        print(f"  {name.ljust(width)}  {seconds:6.1f} s  {result}")
    print(f"  {'total'.ljust(width)}  {time.monotonic() - t_all:6.1f} s")
    print()
    print(viewing_guide(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
