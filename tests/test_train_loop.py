"""The training loop on an in-memory patch dataset: run directory, resume, freezing, schedules."""

from __future__ import annotations

import csv
import json
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from volumetric.errors import InputError
from volumetric.models.checkpoint import model_from_checkpoint, read_checkpoint
from volumetric.models.device import resolve_device
from volumetric.models.export import METADATA_FILE
from volumetric.models.registry import build_model
from volumetric.models.transfer import freeze
from volumetric.train import rundir
from volumetric.train.loop import TrainSettings, _optimizer, _validate, _Validation, fit
from volumetric.train.losses import get_loss
from volumetric.train.rundir import NetworkSpec, curves_figure

TINY = {"depth": 1, "features": 4}


class ToyPatches(torch.utils.data.Dataset):
    """Stand-in for PatchDataset: random crops of in-memory arrays, set by (seed, epoch, index)."""

    def __init__(self, image, target, patch, samples, seed=0):
        self.image, self.target, self.patch = image, target, patch
        self.samples, self.seed, self.epoch = samples, seed, 0

    def __len__(self):
        return self.samples

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = [int(rng.integers(0, s - p + 1)) for s, p in zip(self.image.shape, self.patch)]
        box = tuple(slice(a, a + p) for a, p in zip(start, self.patch))
        squeeze = (0,) if self.patch[0] == 1 else ()
        image = torch.from_numpy(self.image[box]).float().squeeze(squeeze)[None]
        target = torch.from_numpy(self.target[box]).float().squeeze(squeeze)[None]
        return {"image": image, "target": target}


def _blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for _ in range(6):
        centre = [rng.integers(0, s) for s in shape]
        grid = np.indices(shape)
        mask |= sum((g - c) ** 2 for g, c in zip(grid, centre)) < 9
    image = mask * 1.0 + 0.3 * rng.standard_normal(shape)
    return image.astype(np.float32), mask.astype(np.float32)


@pytest.fixture(scope="module")
def volume():
    return _blobs((12, 24, 24))


def _spec(dims=3, activation="sigmoid"):
    return NetworkSpec("unet3d" if dims == 3 else "unet2d", dict(TINY), dims, 1, 1, activation,
                     {"normalize": "none"})


def _run(volume, run_dir, *, settings, patch=(8, 8, 8), resume=False, model=None, **kw):
    torch.manual_seed(settings.seed)
    dims = 2 if patch[0] == 1 else 3
    model = model or build_model("unet3d" if dims == 3 else "unet2d", **TINY)
    train = ToyPatches(*volume, patch, samples=8)
    val = ToyPatches(*volume, patch, samples=4, seed=99)
    return model, fit(model, train, val, _spec(dims), settings, run_dir, resume=resume,
                      progress=False, **kw)


def test_run_dir_contents(volume, tmp_path):
    settings = TrainSettings(loss="bce-dice", batch=2, epochs=2, scheduler="cosine", seed=1)
    model, result = _run(volume, tmp_path / "run", settings=settings)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"metrics.csv", "curves.png", "model.pt",
                                               "model.ts", "last.pt"}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and result.steps == 8
    assert {"train_loss", "val_loss", "val_dice", "val_iou", "val_precision", "val_recall", "lr",
            "patches_per_s"} <= set(rows[0])
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine annealing
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"

    payload = read_checkpoint(run / "model.pt")
    assert payload["architecture"] == "unet3d" and payload["training"]["metrics"]["epoch"] == (
        result.best_epoch)
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(run / "model.ts"), _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE])
    assert meta["spatial_dims"] == 3 and meta["output_activation"] == "sigmoid"
    x = torch.randn(1, 1, 8, 10, 12)
    rebuilt = model_from_checkpoint(payload).eval()
    out = scripted(x)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, rebuilt(x))


def test_training_improves_the_validation_dice(volume, tmp_path):
    settings = TrainSettings(loss="dice", batch=2, epochs=4, lr=1e-2, seed=0)
    _, result = _run(volume, tmp_path / "run", settings=settings)
    assert result.history[-1]["val_dice"] > result.history[0]["val_dice"]


def test_resume_equals_uninterrupted_run(volume, tmp_path):
    settings = TrainSettings(loss="bce", batch=2, epochs=3, scheduler="exponential",
                             decay_after=1, decay_gamma=0.5, seed=3)
    full, whole = _run(volume, tmp_path / "full", settings=settings)

    class Interrupt(Exception):
        pass

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(volume, tmp_path / "parts", settings=settings, on_epoch=stop_after_first)
    torch.manual_seed(1234)  # a fresh process: another random state
    resumed, rest = _run(volume, tmp_path / "parts", settings=settings, resume=True,
                         model=build_model("unet3d", **TINY))
    assert rest.epochs == 3 and len(rest.history) == 3
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["train_loss"] for r in rest.history] == [r["train_loss"] for r in whole.history]


def test_frozen_parameters_do_not_change(volume, tmp_path):
    torch.manual_seed(0)
    model = build_model("unet3d", **TINY)
    freeze(model, "encoder")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers() if n.startswith("encoder.")}
    settings = TrainSettings(loss="dice", batch=2, epochs=1, lr=1e-2)
    _run(volume, tmp_path / "run", settings=settings, model=model)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == name.startswith(("encoder.", "bottleneck.")), name
    for name, b in model.named_buffers():
        if name in buffers and b.dtype.is_floating_point:
            assert torch.equal(b, buffers[name]), name


def test_two_dimensional_patches_and_regression(volume, tmp_path):
    image, mask = volume
    distance = (mask * 3).astype(np.float32)
    settings = TrainSettings(loss="mse", batch=2, epochs=1, steps=3, clip_grad=1.0,
                             optimizer="adam")
    torch.manual_seed(0)
    model = build_model("unet2d", **TINY)
    train = ToyPatches(image, distance, (1, 12, 12), samples=8)
    val = ToyPatches(image, distance, (1, 12, 12), samples=2, seed=5)
    result = fit(model, train, val, _spec(2, "none"), settings, tmp_path / "run", progress=False,
                 data_range=3.0)
    assert result.steps == 3
    row = result.history[0]
    assert {"val_mse", "val_psnr", "val_ssim"} <= set(row)
    assert row["val_psnr"] == pytest.approx(10 * np.log10(9 / row["val_mse"]))


def test_exponential_decay_starts_after_decay_after_epochs(volume, tmp_path):
    settings = TrainSettings(loss="dice", batch=2, epochs=4, lr=1e-3, scheduler="exponential",
                             decay_after=2, decay_gamma=0.5)
    train = ToyPatches(*volume, (8, 8, 8), samples=2)
    result = fit(build_model("unet3d", **TINY), train, None, _spec(), settings, tmp_path / "run",
                 progress=False)
    assert [row["lr"] for row in result.history] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


class PoisonedPatches(ToyPatches):
    """Patches whose images are NaN from epoch ``poisoned_from`` on."""

    poisoned_from = 0

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.epoch >= self.poisoned_from:
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


@pytest.mark.parametrize("poisoned_from", [0, 1])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_epoch(volume, tmp_path,
                                                                        poisoned_from):
    train = PoisonedPatches(*volume, (8, 8, 8), samples=4)
    train.poisoned_from = poisoned_from
    settings = TrainSettings(loss="mse", batch=2, epochs=3)
    run = tmp_path / "run"
    with pytest.raises(InputError, match=f"training loss became nan at epoch {poisoned_from + 1} "
                                         f"step {2 * poisoned_from + 1}; lower --lr"):
        fit(build_model("unet3d", **TINY), train, None, _spec(), settings, run, progress=False)
    files = {p.name for p in run.iterdir()}
    if poisoned_from == 0:
        assert not files & {"model.pt", "model.ts", "last.pt"}
    else:
        assert {"model.pt", "model.ts", "last.pt"} <= files
        assert read_checkpoint(run / "last.pt")["training"]["epoch"] == 1


def test_every_batch_target_is_checked_against_the_loss(volume, tmp_path):
    image, mask = volume
    train = ToyPatches(image, mask + 1, (8, 8, 8), samples=4)  # values 1 and 2: not for bce
    settings = TrainSettings(loss="bce", batch=2, epochs=1)
    with pytest.raises(InputError, match=r"--loss bce needs a target with values in \[0, 1\].* "
                                         r"the target batch of epoch 1 step 1 has values in "
                                         r"\[1, 2\]"):
        fit(build_model("unet3d", **TINY), train, None, _spec(), settings, tmp_path / "run",
            progress=False)


def test_each_validation_metric_has_its_own_curve_panel():
    history = [{"epoch": e, "train_loss": 9.0 / e, "val_loss": 8.0 / e, "val_mse": 400.0 / e,
                "val_psnr": 20.0 + e, "val_ssim": 0.1 * e, "seconds": 1.0} for e in (1, 2, 3)]
    fig = curves_figure(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "validation mse", "validation psnr",
                                                   "validation ssim"]
    ssim = fig.axes[3]
    assert [list(line.get_ydata()) for line in ssim.get_lines()] == [[0.1, 0.2, 0.1 * 3]]
    low, high = ssim.get_ylim()
    assert high - low < 1  # SSIM on its own scale, not flattened by MSE


def _record_drawings(monkeypatch, seconds: float) -> list[int]:
    """Replace the drawing of curves.png by one taking ``seconds``; lists each one's epochs."""
    drawn = []

    def draw(run_dir, history):
        time.sleep(seconds)
        drawn.append(len(history))

    monkeypatch.setattr(rundir, "plot_curves", draw)
    return drawn


@pytest.mark.parametrize("drawing_seconds, drawn_epochs", [(0.0, list(range(1, 9))),
                                                            (0.5, [1, 8])])
def test_curves_are_drawn_first_last_and_while_cheap(volume, tmp_path, monkeypatch,
                                                     drawing_seconds, drawn_epochs):
    # A free drawing is redone every epoch; one slower than 5 % of these short epochs only
    # after the first and the last. metrics.csv gets every epoch either way.
    drawn = _record_drawings(monkeypatch, drawing_seconds)
    settings = TrainSettings(loss="dice", batch=8, epochs=8, seed=0)
    _, result = _run(volume, tmp_path / "run", settings=settings)
    assert drawn == drawn_epochs and result.epochs == 8
    assert len(list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))) == 8


def test_early_stopping_draws_the_curves_of_its_last_epoch(volume, tmp_path, monkeypatch):
    drawn = _record_drawings(monkeypatch, 0.5)
    settings = TrainSettings(loss="dice", batch=2, epochs=10, lr=1e-9, patience=2, min_delta=0.5)
    _, result = _run(volume, tmp_path / "run", settings=settings)
    assert result.stopped_early and drawn == [1, 3]


def test_early_stopping(volume, tmp_path):
    # A tiny learning rate never improves the first epoch's loss by min_delta.
    settings = TrainSettings(loss="dice", batch=2, epochs=10, lr=1e-9, patience=2, min_delta=0.5)
    _, result = _run(volume, tmp_path / "run", settings=settings)
    assert result.stopped_early and result.epochs == 3 and result.best_epoch == 1


def test_settings_and_device_errors():
    with pytest.raises(InputError, match="unknown optimizer"):
        TrainSettings(optimizer="sgd")
    with pytest.raises(InputError, match="unknown loss"):
        TrainSettings(loss="focal")
    with pytest.raises(InputError, match=r"--betas must be two numbers in \[0, 1\)"):
        TrainSettings(betas=(0.5, 1.0))
    with pytest.raises(InputError, match="--eps must be positive"):
        TrainSettings(eps=0.0)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(InputError, match="--device"):
        resolve_device("tpu")


def test_loader_workers_do_not_change_the_result(volume, tmp_path):
    # Each epoch's workers must see that epoch (set_epoch before the loader starts them).
    settings = TrainSettings(loss="dice", batch=2, epochs=2, seed=5, workers=0)
    serial, _ = _run(volume, tmp_path / "serial", settings=settings)
    parallel, _ = _run(volume, tmp_path / "parallel", settings=replace(settings, workers=2))
    for (name, a), b in zip(serial.state_dict().items(), parallel.state_dict().values()):
        assert torch.equal(a, b), name


class MaskedPatches(ToyPatches):
    """Patches with a loss mask over their first half along x; ``scramble`` flips the target
    outside it."""

    scramble = False

    def __getitem__(self, index):
        item = super().__getitem__(index)
        item["mask"] = torch.zeros_like(item["target"])
        item["mask"][..., : self.patch[-1] // 2] = 1
        if self.scramble:
            item["target"] = torch.where(item["mask"] > 0, item["target"], 1 - item["target"])
        return item


def test_loss_mask_is_used(volume, tmp_path):
    torch.manual_seed(0)
    model = build_model("unet3d", **TINY)
    train = MaskedPatches(*volume, (8, 8, 8), samples=4)
    scrambled = MaskedPatches(*volume, (8, 8, 8), samples=4, seed=9)
    scrambled.scramble = True
    plain = MaskedPatches(*volume, (8, 8, 8), samples=4, seed=9)
    settings = TrainSettings(loss="bce", batch=2, epochs=1)
    row = fit(model, train, scrambled, _spec(), settings, tmp_path / "a", progress=False).history[0]
    # The validation targets differ only outside the mask, where nothing is counted.
    loss = get_loss("bce")
    again = _validate(model, plain, loss, settings, torch.device("cpu"), _Validation(loss, 1.0))
    assert again["val_loss"] == pytest.approx(row["val_loss"])
    assert again["val_dice"] == pytest.approx(row["val_dice"])


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_optimiser_takes_betas_and_eps(kind):
    settings = TrainSettings(optimizer=kind, betas=(0.5, 0.99), eps=1e-4)
    group = _optimizer(settings, build_model("unet3d", **TINY)).param_groups[0]
    assert group["betas"] == (0.5, 0.99) and group["eps"] == 1e-4
    assert settings.to_json()["betas"] == (0.5, 0.99) and settings.to_json()["eps"] == 1e-4
