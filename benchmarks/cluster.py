"""Throughput of real steps on 1 and 2 worker processes, on an embedded or a standing cluster.

Two steps run as the command line runs them, ``vol`` in a fresh subprocess,
timed from start to exit (Python start-up and imports included):

- ``distance``: the clipped distance map (10 um) of a neurite mask
  (:mod:`volumetric.testing.neurites`, ``--side`` cubed, 64^3 chunks);
- ``predict``: dense prediction of a smooth random uint16 volume
  (``--predict-shape``) with the small 3D U-Net of ``benchmarks.predict``
  (64^3 windows, overlap 0.25, z-score), on the CPU.

Each step runs on four clusters: the embedded one (``--cluster local:N``,
started and stopped by the command) and a standing one (``vol cluster up
--workers N``, started once beforehand, its address given with
``--cluster``), each with N = 1 and 2 single-thread worker processes. The
runs alternate, ``--repeats`` times each, and the fastest counts; the first
run on a fresh standing cluster is reported apart (its workers import the
libraries and load the model then).

    python -m benchmarks.cluster [--side 384] [--predict-shape 64,384,384] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.measure import add_scratch_options, report, run_measured, scratch_dir

VOL = [sys.executable, "-m", "volumetric_cli.main"]


def _inputs(scratch: Path, side: int, predict_shape: tuple[int, ...]) -> tuple[Path, Path, Path]:
    """The neurite mask, the raw volume and the TorchScript U-Net."""
    import torch
    from distributed import Client

    from benchmarks.neurites import write_image
    from benchmarks.predict import WINDOW, make_volume, unet
    from volumetric.engine.cluster import local_cluster
    from volumetric.models.export import to_torchscript
    from volumetric.testing.neurites import neurites

    mask, raw, model = scratch / "mask.zarr", scratch / "raw.zarr", scratch / "unet.pt"
    with local_cluster(2, dashboard_address=":0") as cluster, Client(cluster) as client:
        write_image(mask, neurites((side,) * 3, voxel_size=(2.0, 1.0, 1.0), seed=0), raw=False,
                    chunks=64, client=client)
    make_volume(raw, predict_shape)
    torch.jit.save(to_torchscript(unet(), torch.zeros(1, 1, *WINDOW)), str(model))
    return mask, raw, model


def _step(step: str, inputs: tuple[Path, Path, Path], out: Path, cluster: str) -> list[str]:
    mask, raw, model = inputs
    if step == "distance":
        return ["distance", str(mask), str(out), "--clip", "10", "--cluster", cluster]
    return ["predict", str(raw), str(out), "--model", str(model), "--window", "64,64,64",
            "--overlap", "0.25", "--normalize", "zscore", "--device", "cpu",
            "--cluster", cluster]


def _run(step: str, inputs: tuple[Path, Path, Path], scratch: Path, cluster: str) -> float:
    out = scratch / f"{step}-out.zarr"
    measured = run_measured([*VOL, "-q", *_step(step, inputs, out, cluster), "--overwrite"])
    return measured.seconds


def _standing(workers: int, state: Path) -> str:
    os.environ["VOLUMETRIC_STATE"] = str(state)
    subprocess.run([*VOL, "cluster", "up", "--workers", str(workers), "--dashboard-address",
                    ":0"], check=True, capture_output=True)
    return str(json.loads((state / "cluster.json").read_text())["address"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=384, help="side of the distance mask")
    parser.add_argument("--predict-shape", default="64,384,384", help="z,y,x of the raw volume")
    parser.add_argument("--steps", default="distance,predict")
    parser.add_argument("--repeats", type=int, default=2)
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    predict_shape = tuple(int(v) for v in args.predict_shape.split(","))
    steps = args.steps.split(",")
    os.environ.pop("VOLUMETRIC_CLUSTER", None)

    results: dict = {"side": args.side, "predict_shape": list(predict_shape),
                     "repeats": args.repeats, "load_average_start": list(os.getloadavg()),
                     "steps": {}}
    with scratch_dir("cluster", args) as scratch:
        inputs = _inputs(scratch, args.side, predict_shape)
        times: dict[str, dict[str, list[float]]] = {s: {} for s in steps}
        for workers in (1, 2):
            address = _standing(workers, scratch / f"state-{workers}")
            try:
                for step in steps:
                    times[step][f"standing:{workers} first"] = [
                        _run(step, inputs, scratch, address)]
                for _ in range(args.repeats):
                    for step in steps:
                        times[step].setdefault(f"local:{workers}", []).append(
                            _run(step, inputs, scratch, f"local:{workers}"))
                        times[step].setdefault(f"standing:{workers}", []).append(
                            _run(step, inputs, scratch, address))
            finally:
                subprocess.run([*VOL, "cluster", "down"], capture_output=True)
        rows = []
        for step in steps:
            best = {k: min(v) for k, v in times[step].items()}
            results["steps"][step] = {
                "seconds": times[step], "best": best,
                "two_workers_speedup_embedded": best["local:1"] / best["local:2"],
                "two_workers_speedup_standing": best["standing:1"] / best["standing:2"],
                "standing_speedup_1": best["local:1"] / best["standing:1"],
                "standing_speedup_2": best["local:2"] / best["standing:2"],
            }
            for key in ("local:1", "local:2", "standing:1 first", "standing:1",
                        "standing:2 first", "standing:2"):
                rows.append((step, key, " ".join(f"{t:.1f}" for t in times[step][key]),
                             f"{best[key]:.1f}"))
        results["load_average_end"] = list(os.getloadavg())
        report("cluster", results, rows, ("step", "cluster", "runs s", "best s"))
        for step in steps:
            r = results["steps"][step]
            print(f"{step}: 2 vs 1 workers {r['two_workers_speedup_embedded']:.2f}x embedded, "
                  f"{r['two_workers_speedup_standing']:.2f}x standing; standing vs embedded "
                  f"{r['standing_speedup_1']:.2f}x (1 worker), {r['standing_speedup_2']:.2f}x "
                  "(2 workers)")
    return results


if __name__ == "__main__":
    main()
