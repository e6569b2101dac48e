"""The labs' pipelines with `vol` alone, on small synthetic data of their reports' shapes.

Each trains briefly on CPU and compares with the same network after a single
step, so the assertions hold for what training adds, not for absolute scores.
"""

from __future__ import annotations

import json

import numpy as np
import tifffile
import zarr

SMALL_NET = ["--depth", "2", "--features", "8", "--batch", "4", "--no-augment", "--seed", "1"]


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def scores(vol, *args) -> dict:
    return json.loads(ok(vol("evaluate", *args, "--json")).stdout)


def test_em_mitochondria_planes_of_a_tiff_stack_with_instance_labels(vol, tmp_path):
    """002: 2D training on the planes of a stack, labels as target, validation by planes."""
    ok(vol("synth", "mito", tmp_path / "em.tif", "--shape", "8,64,64", "--seed", "2"))
    ok(vol("convert", tmp_path / "em.tif", tmp_path / "em.zarr"))
    ok(vol("convert", tmp_path / "em_labels.tif", tmp_path / "labels.zarr"))
    dice = {}
    for steps in (1, 80):
        run = tmp_path / f"run{steps}"
        trained = ok(vol("train", tmp_path / "em.zarr", tmp_path / "labels.zarr", "--out", run,
                         "--patch", "1,64,64", "--steps", str(steps), "--lr", "0.01",
                         *SMALL_NET))
        assert "target: labels" in trained.stderr
        config = json.loads((run / "config.json").read_text())
        assert config["loss"] == "bce-dice" and config["data"]["val_split"] in ("auto", "planes")
        ok(vol("predict", tmp_path / "em.zarr", tmp_path / f"p{steps}.zarr", "--model",
               run / "model.ts", "--device", "cpu"))
        result = scores(vol, tmp_path / f"p{steps}.zarr", tmp_path / "labels.zarr",
                        "--threshold", "0.5")
        assert result["objects"]["truth"] == len(np.unique(tifffile.imread(
            tmp_path / "em_labels.tif"))) - 1
        dice[steps] = result["dice"]
    assert dice[80] > dice[1] + 0.2 and dice[80] > 0.5, dice


def test_brightfield_projection_to_fluorescence_back_in_uint16(vol, tmp_path):
    """003: a 7-plane projection as raw, a 2D uint16 image as target, prediction in uint16."""
    ok(vol("synth", "zstack", tmp_path / "cells", "--samples", "3", "--shape", "64,64",
           "--seed", "3"))
    ok(vol("convert", tmp_path / "cells_brightfield.tif", tmp_path / "bf.zarr"))
    ok(vol("convert", tmp_path / "cells_fluorescence.tif", tmp_path / "fl.zarr", "--axes", "tyx"))
    ok(vol("project", tmp_path / "bf.zarr", tmp_path / "mip.zarr", "--axis", "z"))
    ssim = {}
    for steps in (1, 120):
        run = tmp_path / f"run{steps}"
        trained = ok(vol("train", tmp_path / "mip.zarr", tmp_path / "fl.zarr", "--out", run,
                         "--patch", "1,64,64", "--steps", str(steps), "--lr", "0.01",
                         "--model", "attention-resunet-2d", *SMALL_NET))
        assert "target: image" in trained.stderr
        ok(vol("predict", tmp_path / "mip.zarr", tmp_path / f"p{steps}.zarr", "--model",
               run / "model.ts", "--device", "cpu", "--dtype", "uint16"))
        pred = zarr.open_array(str(tmp_path / f"p{steps}.zarr" / "0"), mode="r")
        assert pred.dtype == np.uint16
        ssim[steps] = np.mean([scores(vol, tmp_path / f"p{steps}.zarr", tmp_path / "fl.zarr",
                                      "--t", str(t))["ssim"] for t in range(3)])
    target = zarr.open_array(str(tmp_path / "fl.zarr" / "0"), mode="r")[:]
    trained = zarr.open_array(str(tmp_path / "p120.zarr" / "0"), mode="r")[:]
    assert abs(float(trained.mean()) - float(target.mean())) < 0.5 * float(target.std())
    assert ssim[120] > ssim[1] + 0.05, ssim


def test_transfer_learning_trains_exactly_the_last_weighted_layers(vol, tmp_path):
    """004: pretrain, then --init --freeze last-3 trains the last three layers with weights."""
    ok(vol("synth", "neurites", tmp_path / "n.h5", "--shape", "32,64,64", "--seed", "4",
           "--foreground", "0.02"))
    ok(vol("convert", f"{tmp_path / 'n.h5'}/raw", tmp_path / "raw.zarr"))
    ok(vol("convert", f"{tmp_path / 'n.h5'}/mask", tmp_path / "mask.zarr"))
    common = ["--patch", "16,32,32", "--steps", "20", "--val-fraction", "0", *SMALL_NET]
    ok(vol("train", tmp_path / "raw.zarr", tmp_path / "mask.zarr", "--out", tmp_path / "pre",
           *common))
    ok(vol("train", tmp_path / "raw.zarr", tmp_path / "mask.zarr", "--out", tmp_path / "tuned",
           "--init", tmp_path / "pre" / "model.pt", "--freeze", "last-3", *common))
    layers = json.loads((tmp_path / "tuned" / "config.json").read_text())["layers"]
    weighted = [layer for layer in layers  # norm layers train with the layer they follow
                if not layer["name"].rsplit(".", 1)[-1].startswith("norm")]
    assert [layer["trained"] for layer in weighted] == [False] * (len(weighted) - 3) + [True] * 3
    assert weighted[-1]["name"] == "head"
    ok(vol("predict", tmp_path / "raw.zarr", tmp_path / "p.zarr", "--model",
           tmp_path / "tuned" / "model.ts", "--device", "cpu"))
    result = scores(vol, tmp_path / "p.zarr", tmp_path / "mask.zarr", "--threshold", "0.5")
    assert 0 <= result["iou"] <= 1 and result["objects"]["truth"] > 0
