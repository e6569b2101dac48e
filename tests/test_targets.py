"""Targets as they come: detection, binarising, normalisation and the way back to their units."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from ome_images import write_image

from volumetric import PredictOptions, predict
from volumetric.engine import RunOptions
from volumetric.io.ome import open_image
from volumetric.models.checkpoint import read_checkpoint
from volumetric.models.export import save_torchscript
from volumetric.ops.train import DataSettings, train
from volumetric.train import NetworkSpec, TrainSettings
from volumetric.train.dataset import PatchDataset, VolumePair
from volumetric.train.targets import TargetSample, plan_target, sample_target, target_kind
from volumetric_cli.main import vol as vol_command

TINY = ("--depth", "1", "--features", "4", "--batch", "2", "--steps-per-epoch", "2",
        "--val-patches", "2", "--val-fraction", "0.5", "--no-augment", "--patch", "1,16,16",
        "--steps", "2")


def _vol(*args):
    return CliRunner().invoke(vol_command, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 32, 32), np.uint16)
    for i in range(30):
        z, y, x = rng.integers(0, (4, 28, 28))
        labels[z, y:y + 4, x:x + 4] = i + 1
    inside = labels > 0
    raw = (inside * 200 + rng.integers(0, 60, labels.shape)).astype(np.uint16)
    fluorescence = (57 + inside * 1300 + rng.integers(0, 50, labels.shape)).astype(np.uint16)
    images = {"raw": raw, "labels": labels, "mask255": (inside * 255).astype(np.uint8),
              "fluorescence": fluorescence, "float": fluorescence.astype(np.float32)}
    return {name: write_image(root / f"{name}.zarr", data, chunks=(2, 16, 16))
            for name, data in images.items()}


def _sample(values, dtype="uint16", recorded=None):
    return TargetSample("t.zarr", dtype, (np.asarray(values, dtype),), recorded)


@pytest.mark.parametrize(("values", "dtype", "recorded", "kind"), [
    ([0, 1], "uint8", None, "mask"),
    ([0, 255], "uint8", None, "mask"),
    ([0, 3, 7, 9], "uint16", None, "labels"),
    ([57, 300, 1412], "uint16", None, "image"),
    ([0.0, 0.5, 1.0], "float32", None, "image"),
    ([0.0, 4.0], "float32", "distance", "distance"),
])
def test_kind_is_detected_from_dtype_and_values(values, dtype, recorded, kind):
    assert target_kind([_sample(values, dtype, recorded)]) == kind


def test_labels_and_masks_are_binarised_and_images_normalised(volumes):
    labels = sample_target(volumes["labels"])
    assert labels.describe("labels") == "uint16, 30 ids"
    transform = plan_target([labels], "labels")
    dataset = PatchDataset([VolumePair(volumes["raw"], volumes["labels"])], (1, 32, 32),
                           samples_per_epoch=4, target=transform)
    assert {float(v) for i in range(4) for v in dataset[i]["target"].unique()} <= {0.0, 1.0}

    image = plan_target([sample_target(volumes["fluorescence"])], "image")
    assert image.normalize == "percentile" and image.dtype == "uint16"
    low, high = image.learned_span(sample_target(volumes["fluorescence"]))
    assert -0.5 < low < 0.1 and 0.9 < high < 1.5


@pytest.mark.parametrize(("target", "kind", "line"), [
    ("labels", "labels", "target: labels (uint16, 30 ids) \u2192 binary foreground (>0)"),
    ("mask255", "mask", "target: mask (uint8, 0/255) \u2192 binary foreground (>0)"),
])
def test_labels_and_0_255_masks_train_with_the_mask_loss(volumes, tmp_path, target, kind, line):
    result = _vol("train", volumes["raw"], volumes[target], "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    assert line in result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["loss"] == "bce-dice" and config["target"]["kind"] == kind


@pytest.mark.parametrize(("target", "extra", "message"), [
    ("labels", ("--loss", "mse"), "--loss mse regresses values, but the target is a label image"),
    ("labels", ("--loss", "mse", "--target", "labels"), "is a label image"),
    ("float", ("--target", "labels"), "--target labels needs an integer target"),
    ("labels", ("--target-normalize", "zscore"), "--target labels is binarised"),
])
def test_bad_target_options_are_one_line_exit_2(volumes, tmp_path, target, extra, message):
    result = _vol("train", volumes["raw"], volumes[target], "--out", tmp_path / "run", *TINY,
                  *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_uint16_image_trains_on_the_normalised_scale(volumes, tmp_path):
    data = DataSettings(volumes["raw"], volumes["fluorescence"], patch=(1, 16, 16),
                        target_kind="image", val_fraction=0.5, val_patches=2, steps_per_epoch=2,
                        augment=False)
    settings = TrainSettings(loss="auto", batch=2, steps=2, device="cpu")
    report = train(data, tmp_path / "run", settings=settings, progress=False)
    row = report.result.history[-1]
    assert row["train_loss"] < 10 and row["val_mse"] < 10  # not O(1e4): the target is normalised
    stored = read_checkpoint(tmp_path / "run" / "model.pt")["target"]
    assert stored["kind"] == "image" and stored["normalize"] == "percentile"
    assert stored["dtype"] == "uint16" and 50 <= stored["stats"][0]["low"] < 120


def test_prediction_of_the_target_through_an_identity_model_returns_its_units(
        client, volumes, tmp_path):
    target = volumes["fluorescence"]
    transform = plan_target([sample_target(target)], "image")
    spec = NetworkSpec("identity", {}, 3, 1, 1, "none", {"normalize": "percentile"},
                       (2, 16, 16), transform.metadata())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(torch.nn.Identity())
    save_torchscript(scripted, tmp_path / "identity.ts", spec.metadata())

    options = PredictOptions(str(tmp_path / "identity.ts"), device="cpu", dtype="uint16",
                             chunks=(2, 16, 16))
    predict(target, str(tmp_path / "pred.zarr"), options,
            run=RunOptions(client=client, progress=False))
    written = open_image(tmp_path / "pred.zarr").array(0)[...]
    expected = open_image(target).array(0)[...]
    assert written.dtype == np.uint16 and written.shape == (1, *expected.shape)
    assert np.abs(written[0].astype(np.int64) - expected).max() <= 1


def test_a_shaped_distance_map_is_a_distance_target(volumes, tmp_path):
    """`vol distance --clip --normalize` gives 0..1 floats: still a distance map, not an image."""
    out = tmp_path / "d.zarr"
    assert _vol("distance", volumes["mask255"], out, "--clip", "3", "--normalize",
                "--power", "0.5").exit_code == 0
    sample = sample_target(str(out))
    assert target_kind([sample]) == "distance"
    assert plan_target([sample], "distance").normalize == "none"  # trained on its own scale
