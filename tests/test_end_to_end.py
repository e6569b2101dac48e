"""Synthetic neurites -> discover -> distance (clip 10) -> train -> predict -> evaluate.

A small 3D U-Net regresses the normalised clipped distance map for a bounded
number of CPU steps; thresholding its prediction near zero must recover the
neurites far better than the same network untrained.
"""

from __future__ import annotations

import json


from volumetric.testing.neurites import neurites, write_neurites

TRAIN = ["--patch", "16,32,32", "--batch", "4", "--loss", "mse", "--lr", "0.005",
         "--depth", "2", "--features", "8", "--sampler", "foreground", "--foreground", "<0.3",
         "--no-augment", "--val-fraction", "0.34", "--val-patches", "8", "--seed", "0",
         "--steps-per-epoch", "50"]


def _ok(result):
    assert result.exit_code == 0, result.output
    return result




def test_pipeline_learns_the_neurites(vol, tmp_path):
    h5, swc, _ = write_neurites(tmp_path / "n.h5", neurites((48, 96, 96), seed=5, foreground=0.03),
                                chunks=(16, 32, 32), progress=False)
    for name in ("raw", "mask"):
        _ok(vol("convert", h5, tmp_path / f"{name}.zarr", "--dataset", name, "--chunks", "16,32,32"))
    _ok(vol("discover", tmp_path / "mask.zarr", tmp_path / "cubes.json", "--seeds-swc", swc,
            "--min-voxels", "10"))
    cubes = json.loads((tmp_path / "cubes.json").read_text())
    assert 0 < len(cubes["cubes"]) < cubes["cubes_read"]
    _ok(vol("distance", tmp_path / "mask.zarr", tmp_path / "dist.zarr", "--clip", "10",
            "--normalize"))

    dice = {}
    for name, steps, lr in (("untrained", "1", "1e-12"), ("trained", "200", "0.005")):
        run = tmp_path / name
        _ok(vol("train", tmp_path / "raw.zarr", tmp_path / "dist.zarr", "--out", run,
                "--cubes", tmp_path / "cubes.json", *TRAIN, "--steps", steps, "--lr", lr))
        assert {"config.json", "metrics.csv", "curves.png", "model.pt", "model.ts"} <= {
            p.name for p in run.iterdir()}
        pred = tmp_path / f"{name}.zarr"
        _ok(vol("predict", tmp_path / "raw.zarr", pred, "--model", run / "model.ts",
                "--cubes", tmp_path / "cubes.json", "--clip", "1"))
        scores = json.loads(_ok(vol("evaluate", pred, tmp_path / "mask.zarr", "--threshold", "0.1",
                                    "--below", "--json")).stdout)
        dice[name] = scores["dice"]
    assert dice["untrained"] < 0.3
    assert dice["trained"] > 0.6
    assert dice["trained"] > dice["untrained"] + 0.4
