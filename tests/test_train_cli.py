"""``vol train`` on small OME-Zarr volumes: the run directory, resume rules and bad input."""

from __future__ import annotations

import csv
import json
import os
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner



from ome_images import write_image  # noqa: E402
from predict_models import evil_checkpoint  # noqa: E402

from volumetric.models.checkpoint import save_checkpoint  # noqa: E402
from volumetric.models.registry import build_model  # noqa: E402
from volumetric.ops.train import DataSettings, ModelChoice, train  # noqa: E402
from volumetric.train import TrainSettings  # noqa: E402
from volumetric_cli.main import vol as vol_command  # noqa: E402

TINY = ("--depth", "1", "--features", "4", "--batch", "2", "--steps-per-epoch", "2",
        "--val-patches", "2", "--val-fraction", "0.5", "--no-augment")


def _vol(*args):
    return CliRunner().invoke(vol_command, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-cli")
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 32, 32), np.uint8)
    mask[:, 10:14, :] = 1
    mask[:, :, 20:23] = 1
    raw = (mask * 200 + rng.integers(0, 60, mask.shape)).astype(np.uint16)
    distance = np.where(mask > 0, 0.0, 9.0).astype(np.float32)
    return {
        "raw": write_image(root / "raw.zarr", raw, chunks=(8, 16, 16)),
        "nan": write_image(root / "nan.zarr", np.full(mask.shape, np.nan, np.float32)),
        "mask": write_image(root / "mask.zarr", mask, chunks=(8, 16, 16)),
        "distance": write_image(root / "distance.zarr", distance),
        "normalized": write_image(root / "normalized.zarr", distance / 9),
        "raw2": write_image(root / "raw2.zarr", raw[:, ::-1].copy()),
        "mask2": write_image(root / "mask2.zarr", mask[:, ::-1].copy()),
        "small": write_image(root / "small.zarr", mask[:, :16]),
        "scaled": write_image(root / "scaled.zarr", mask, voxel_size=(2.0, 1.0, 1.0)),
    }


def _error(result):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vol: error: "), result.stderr
    return lines[0]


def test_train_writes_the_run_dir_and_resume_rules(volumes, tmp_path):
    run = tmp_path / "run"
    args = ("train", volumes["raw"], volumes["mask"], "--out", run, "--patch", "8,16,16",
            "--steps", "4", *TINY)
    result = _vol(*args)
    assert result.exit_code == 0, result.output
    assert "trained unet3d: 2 epochs, 4 steps" in result.stdout
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "curves.png",
                                               "model.pt", "model.ts"}
    config = json.loads((run / "config.json").read_text())
    assert config["loss"] == "bce-dice" and config["model"]["architecture"] == "unet3d"
    assert config["data"]["patch"] == [8, 16, 16]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(run / "model.ts"))
    with torch.no_grad():
        out = scripted(torch.rand(1, 1, 8, 20, 20))
    assert out.shape == (1, 1, 8, 20, 20) and 0 <= float(out.min()) and float(out.max()) <= 1

    assert "--resume" in _error(_vol(*args))
    assert config["betas"] == [0.9, 0.999] and config["eps"] == 1e-8
    line = _error(_vol(*args, "--resume", "--lr", "0.1", "--patch", "8,8,16", "--betas",
                       "0.5,0.999", "--eps", "1e-4"))
    assert f"options differ from the run in {run}: betas [0.9, 0.999] -> [0.5, 0.999]; " \
           "data.patch [8, 16, 16] -> [8, 8, 16]; eps 1e-08 -> 0.0001; lr 0.001 -> 0.1; " \
           "rerun" in line
    assert "--betas must be two numbers" in _error(_vol(*args, "--betas", "0.5,1.5"))
    again = _vol(*args, "--resume")
    assert again.exit_code == 0 and "4 steps" in again.stdout


def test_two_pairs_are_sampled(volumes, tmp_path, monkeypatch):
    from volumetric.train.dataset import PatchDataset

    drawn = []
    original = PatchDataset.__getitem__

    def recording(self, index):
        item = original(self, index)
        drawn.append(int(item["location"][0]))
        return item

    monkeypatch.setattr(PatchDataset, "__getitem__", recording)
    run = tmp_path / "run"
    second = f"{volumes['raw2']},{volumes['mask2']}"
    result = _vol("train", volumes["raw"], volumes["mask"], "--out", run, "--pair", second,
                  "--patch", "8,16,16", "--steps", "3", *TINY)
    assert result.exit_code == 0, result.output
    assert sorted(set(drawn)) == [0, 1]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["pairs"] == [[volumes["raw2"], volumes["mask2"], None]]
    line = _error(_vol("train", volumes["raw"], volumes["mask"], "--out", tmp_path / "bad",
                       "--pair", f"{volumes['raw2']},{volumes['small']}", "--patch",
                       "8,16,16", "--steps", "2", *TINY))
    assert f"target {volumes['small']} has spatial shape" in line


def test_resume_takes_the_paths_however_they_are_spelled(volumes, tmp_path, monkeypatch):
    run = tmp_path / "run"
    options = ("--patch", "8,16,16", "--steps", "2", *TINY)
    first = _vol("train", volumes["raw"], volumes["mask"], "--out", run, *options)
    assert first.exit_code == 0, first.output
    monkeypatch.chdir(tmp_path)
    relative = [os.path.relpath(volumes[k]) for k in ("raw", "mask")]
    assert not os.path.isabs(relative[0])
    again = _vol("train", *relative, "--out", "run", *options, "--resume")
    assert again.exit_code == 0 and "1 epochs, 2 steps" in again.stdout, again.output
    # Through a symbolic link to the volumes' folder: the same files, so the same run.
    (tmp_path / "linked").symlink_to(os.path.dirname(volumes["raw"]))
    linked = [os.path.join("linked", os.path.basename(volumes[k])) for k in ("raw", "mask")]
    third = _vol("train", *linked, "--out", "run", *options, "--resume")
    assert third.exit_code == 0 and "1 epochs, 2 steps" in third.stdout, third.output
    stored = json.loads((run / "config.json").read_text())["data"]
    assert stored["raw"] == str(tmp_path / "linked" / os.path.basename(volumes["raw"]))


def test_python_settings_train_as_many_steps_as_the_cli(volumes, tmp_path):
    steps = 24  # more than the 10 default epochs of 2 steps: the epochs follow the steps
    cli = _vol("train", volumes["raw"], volumes["mask"], "--out", tmp_path / "cli", "--patch",
               "8,16,16", "--steps", steps, "--device", "cpu", *TINY)
    assert cli.exit_code == 0 and f"12 epochs, {steps} steps" in cli.stdout, cli.output
    data = DataSettings(volumes["raw"], volumes["mask"], patch=(8, 16, 16), augment=False,
                        val_fraction=0.5, val_patches=2, steps_per_epoch=2)
    report = train(data, tmp_path / "api", model=ModelChoice(config={"depth": 1, "features": 4}),
                   settings=TrainSettings(batch=2, steps=steps, device="cpu"), progress=False)
    assert report.result.steps == steps and report.result.epochs == 12

    def rows(run):
        with (tmp_path / run / "metrics.csv").open() as f:
            return [(row["epoch"], row["train_loss"]) for row in csv.DictReader(f)]

    assert rows("cli") == rows("api") and len(rows("api")) == 12
    config = {run: json.loads((tmp_path / run / "config.json").read_text())
              for run in ("cli", "api")}
    assert config["cli"] == config["api"] and config["api"]["epochs"] == 12


def test_quiet_and_a_nan_loss(volumes, tmp_path):
    run = tmp_path / "run"
    common = ("--out", run, "--patch", "8,16,16", "--steps", "2", *TINY)
    # NaN raw values give a NaN loss at the first step: one line, exit 2, nothing claimed.
    line = _error(_vol("-q", "train", volumes["nan"], volumes["mask"], *common))
    assert "training loss became nan at epoch 1 step 1; lower --lr" in line
    assert not (run / "model.pt").exists() and not (run / "model.ts").exists()
    # Nothing was trained there, so the run directory starts again with other inputs.
    quiet = _vol("-q", "train", volumes["raw"], volumes["mask"], *common)
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output
    assert (run / "model.pt").is_file() and "wrote" in quiet.stdout


def test_two_dimensional_patches_and_transfer(volumes, tmp_path):
    first = tmp_path / "first"
    result = _vol("train", volumes["raw"], volumes["normalized"], "--out", first, "--patch",
                  "1,16,16", "--steps", "2", *TINY)
    assert result.exit_code == 0, result.output
    config = json.loads((first / "config.json").read_text())
    # --loss auto: a float target within [0, 1] (a normalised distance map) is regressed.
    assert config["loss"] == "mse" and config["model"]["architecture"] == "unet2d"

    tuned = tmp_path / "tuned"
    result = _vol("train", volumes["raw"], volumes["normalized"], "--out", tuned, "--patch",
                  "1,16,16", "--steps", "2", "--init", first / "model.pt", "--freeze",
                  "last-4", *TINY[4:])
    assert result.exit_code == 0, result.output
    before = torch.load(first / "model.pt", weights_only=True)["state_dict"]
    after = torch.load(tuned / "model.pt", weights_only=True)["state_dict"]
    layers = json.loads((tuned / "config.json").read_text())["layers"]
    trained = [layer["name"] for layer in layers if layer["trained"]]
    # depth 1: encoder.0 (2 convs), bottleneck (2), decoder.0.up, decoder.0.block (2), head
    assert trained == ["decoder.0.up", "decoder.0.block.conv1", "decoder.0.block.norm1",
                       "decoder.0.block.conv2", "decoder.0.block.norm2", "head"]
    assert "--freeze last-4: training " in result.stderr
    assert "decoder.0.up (" in result.stderr and "frozen: encoder, bottleneck" in result.stderr
    for name, weights in before.items():
        if name.rsplit(".", 1)[0] not in trained:
            assert torch.equal(weights, after[name]), name
    assert not torch.equal(before["decoder.0.up.weight"], after["decoder.0.up.weight"])


def test_init_from_torchscript_is_one_line_without_warnings(volumes, tmp_path):
    scripted = tmp_path / "model.ts"
    torch.jit.script(build_model("unet3d", depth=1, features=4)).save(str(scripted))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _vol("train", volumes["raw"], volumes["mask"], "--out", tmp_path / "run",
                      "--patch", "8,16,16", "--steps", "2", "--init", scripted, *TINY)
    assert f"{scripted} is a TorchScript file" in _error(result)
    assert not [w for w in caught if "TorchScript" in str(w.message)]


def _unet2d_checkpoint(path):
    save_checkpoint(path, build_model("unet2d", depth=1, features=4), architecture="unet2d",
                    model_config={"depth": 1, "features": 4}, spatial_dims=2, in_channels=1,
                    out_channels=1)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("shapes", "shape"),
        ("voxel sizes", "voxel"),
        ("patch too large", "patch"),
        ("empty cubes", "empty"),
        ("loss vs target", r"--loss bce needs a target with values in [0, 1]"),
        ("other architecture", "holds a network of architecture unet2d, not unet3d"),
        ("2D model on 3D patches", "--model unet2d needs 2D patches"),
        ("steps and epochs", "not both"),
        ("freeze", "--freeze last-1000: the model has only 8 layers with weights"),
        ("loss name", "unknown loss"),
    ],
)
def test_bad_input_is_one_line_exit_2(volumes, tmp_path, case, message):
    raw, mask = volumes["raw"], volumes["mask"]
    extra: tuple = ()
    target = mask
    if case == "shapes":
        target = volumes["small"]
    elif case == "voxel sizes":
        target = volumes["scaled"]
    elif case == "patch too large":
        extra = ("--patch", "8,16,64")
    elif case == "empty cubes":
        cubes = tmp_path / "cubes.json"
        cubes.write_text(json.dumps({"cube_shape": [8, 16, 16], "cubes": []}))
        extra = ("--cubes", cubes)
    elif case == "loss vs target":
        target, extra = volumes["distance"], ("--loss", "bce")
    elif case == "other architecture":
        extra = ("--init", _unet2d_checkpoint(tmp_path / "ckpt.pt"), "--model", "unet3d")
    elif case == "2D model on 3D patches":
        extra = ("--model", "unet2d")
    elif case == "steps and epochs":
        extra = ("--epochs", "2")
    elif case == "freeze":
        extra = ("--freeze", "last-1000")
    elif case == "loss name":
        extra = ("--loss", "focal")
    run = tmp_path / "run"
    patch = () if "--patch" in extra else ("--patch", "8,16,16")
    line = _error(_vol("train", raw, target, "--out", run, *patch, "--steps", "2", *TINY, *extra))
    assert message in line
    assert not (run / "model.pt").exists()


def test_init_never_builds_what_a_checkpoint_names(volumes, tmp_path):
    evil = evil_checkpoint(tmp_path / "evil.pt", tmp_path / "ran")
    line = _error(_vol("train", volumes["raw"], volumes["mask"], "--out", tmp_path / "run",
                       "--patch", "8,16,16", "--steps", "2", *TINY, "--init", evil))
    assert "'os:system', which is not built in" in line and "--model module:factory --init" in line
    assert not (tmp_path / "ran").exists()


def test_augmentation_knobs_reach_the_run_config(volumes, tmp_path):
    run = tmp_path / "run"
    result = _vol("train", volumes["raw"], volumes["mask"], "--out", run, "--patch", "8,16,16",
                  "--steps", "2", *TINY[:-1], "--rotate", "45", "--elastic", "34,4", "--scale",
                  "0.8,1.25", "--gamma", "0.7,1.5", "--blur", "1", "--no-aug", "blur")
    assert result.exit_code == 0, result.output
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["augment_off"] == ["blur"]
    augmentation = data["augmentation"]
    assert augmentation["rotate_degrees"] == 45 and augmentation["zoom"] == [0.8, 1.25]
    assert augmentation["gamma"] == [0.7, 1.5] and augmentation["blur_sigma"] == 1
    assert (augmentation["elastic_magnitude"], augmentation["elastic_spacing"]) == (1.3844, 8)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--rotate", "-20", "--rotate"),
    ("--scale", "1.2,0.8", "MIN <= MAX"),
    ("--gamma", "2,1", "MIN <= MAX"),
    ("--gamma", "0,1", "must be positive"),
    ("--blur", "-1", "--blur"),
    ("--elastic", "34", "ALPHA,SIGMA"),
    ("--no-aug", "gamma,sharpen", "unknown augmentation 'sharpen'"),
])
def test_bad_augmentation_knobs_are_one_line(volumes, tmp_path, option, value, message):
    line = _error(_vol("train", volumes["raw"], volumes["mask"], "--out", tmp_path / "run",
                       "--patch", "8,16,16", "--steps", "2", *TINY[:-1], option, value))
    assert message in line
