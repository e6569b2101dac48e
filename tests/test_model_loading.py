"""Loading models: TorchScript, checkpoints, module:factory with weights; unsafe files refused."""

from __future__ import annotations

import warnings

import pytest
import torch
from predict_models import evil_checkpoint, save_torchscript, tiny

from volumetric.errors import InputError
from volumetric.models.checkpoint import read_checkpoint, save_checkpoint
from volumetric.models.device import auto_device, resolve_device
from volumetric.models.loading import ModelSource, load_model


def same_output(a, b):
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        return torch.allclose(a(x), b(x))


def test_torchscript(tmp_path):
    path = save_torchscript(tiny(), tmp_path / "m.pt")
    loaded = load_model(ModelSource(str(path)))
    assert loaded.kind == "torchscript" and loaded.out_channels is None
    assert same_output(loaded.module, tiny())


def test_checkpoint_of_a_registered_architecture(tmp_path):
    model = tiny(out_channels=3)
    with torch.no_grad():
        model[0].bias.fill_(0.25)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, architecture="test-tiny", model_config={"out_channels": 3},
                    spatial_dims=3, in_channels=1, out_channels=3,
                    preprocess={"normalize": "zscore"})
    loaded = load_model(ModelSource(str(path)))
    assert loaded.kind == "checkpoint"
    assert (loaded.in_channels, loaded.out_channels, loaded.spatial_dims) == (1, 3, 3)
    assert loaded.preprocess == {"normalize": "zscore"}
    assert same_output(loaded.module, model)
    assert not loaded.module.training


def test_torchscript_written_by_vol_train_says_what_it_expects(tmp_path):
    from volumetric.models.export import save_torchscript as export

    model = tiny(in_channels=2, out_channels=3)
    export(torch.jit.script(model), tmp_path / "model.ts", {
        "format": "volumetric-torchscript", "spatial_dims": 3, "in_channels": 2,
        "out_channels": 3, "preprocess": {"normalize": "percentile"}, "patch": [32, 48, 48],
    })
    loaded = load_model(ModelSource(str(tmp_path / "model.ts")))
    assert (loaded.in_channels, loaded.out_channels, loaded.spatial_dims) == (2, 3, 3)
    assert loaded.window == (32, 48, 48) and loaded.preprocess == {"normalize": "percentile"}


def test_checkpoint_of_a_module_factory_loads_with_the_factory_named(tmp_path):
    model = tiny(out_channels=1)
    save_checkpoint(tmp_path / "ck.pt", model, architecture="predict_models:tiny",
                    model_config={"out_channels": 1}, spatial_dims=3, in_channels=1,
                    out_channels=1, training={"patch": [16, 16, 16]})
    with pytest.raises(InputError, match="--model module:factory --weights"):
        load_model(ModelSource(str(tmp_path / "ck.pt")))
    loaded = load_model(ModelSource("predict_models:tiny", str(tmp_path / "ck.pt")))
    assert same_output(loaded.module, model) and loaded.window == (16, 16, 16)


def test_a_checkpoint_never_runs_what_it_names(tmp_path):
    path = evil_checkpoint(tmp_path / "evil.pt", tmp_path / "ran")
    with pytest.raises(InputError, match="'os:system', which is not built in") as error:
        load_model(ModelSource(str(path)))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "ran").exists()


def test_factory_with_state_dict_and_with_checkpoint(tmp_path):
    model = tiny()
    with torch.no_grad():
        model[0].weight.mul_(-1)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = load_model(ModelSource("predict_models:tiny", str(tmp_path / "sd.pt")))
    assert loaded.kind == "factory" and same_output(loaded.module, model)
    assert not same_output(loaded.module, tiny())
    save_checkpoint(tmp_path / "ck.pt", model, architecture="test-tiny", model_config={},
                    spatial_dims=3, in_channels=1, out_channels=2,
                    preprocess={"normalize": "percentile"})
    loaded = load_model(ModelSource("predict_models:tiny", str(tmp_path / "ck.pt")))
    assert same_output(loaded.module, model) and loaded.preprocess["normalize"] == "percentile"


def test_unsafe_pickles_are_refused(tmp_path):
    torch.save(tiny(), tmp_path / "whole.pt")
    with pytest.raises(InputError, match="unsafe"):
        load_model(ModelSource(str(tmp_path / "whole.pt")))
    with pytest.raises(InputError, match="unsafe"):
        load_model(ModelSource("predict_models:tiny", str(tmp_path / "whole.pt")))


def test_bad_specs(tmp_path):
    with pytest.raises(InputError, match="no such model file"):
        load_model(ModelSource(str(tmp_path / "missing.pt")))
    with pytest.raises(InputError, match="has no callable"):
        load_model(ModelSource("predict_models:nothing_here"))
    path = save_torchscript(tiny(), tmp_path / "m.pt")
    with pytest.raises(InputError, match="module:factory only"):
        load_model(ModelSource(str(path), str(path)))


def test_weights_that_do_not_fit_name_the_first_problem(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    with pytest.raises(InputError, match=r'does not fit predict_models:tiny: Missing key\(s\) in '
                                         r'state_dict: "0.weight", "0.bias"$'):
        load_model(ModelSource("predict_models:tiny", str(tmp_path / "wrong.pt")))
    torch.save(tiny(out_channels=5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(InputError, match=r"size mismatch for 0.weight: copying a param with "
                                         r"shape torch.Size\(\[5, 1, 3, 3, 3\]\)"):
        load_model(ModelSource("predict_models:tiny", str(tmp_path / "five.pt")))


def test_torchscript_given_as_weights_says_so_without_warnings(tmp_path):
    path = save_torchscript(tiny(), tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError) as error:
            load_model(ModelSource("predict_models:tiny", str(path)))
    assert str(error.value) == f"{path} is a TorchScript model; pass it as --model"
    with pytest.raises(InputError, match="is a TorchScript file, not a checkpoint"):
        read_checkpoint(path)  # e.g. vol train --init model.ts


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    assert resolve_device("cuda:3", check=False) == "cuda:3"
    with pytest.raises(InputError, match="unknown --device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize(("workers", "device"), [
    ({"a": (True, {"GPU": 1.0}), "b": (False, {})}, "cuda"),
    ({"a": (False, {"GPU": 1.0})}, "cpu"),   # a GPU resource, but torch sees no CUDA there
    ({"a": (True, {}), "b": (True, {})}, "cpu"),   # CUDA, but tasks could not hold a GPU
    ({"a": (False, {}), "b": (False, {})}, "cpu"),
    ({}, "cpu"),
])
def test_auto_device_on_a_cluster_is_what_its_workers_offer(workers, device):
    assert auto_device(workers) == device
