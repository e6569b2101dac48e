"""Built-in U-Nets, TorchScript export, freezing and initial weights."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from volumetric.errors import InputError
from volumetric.models.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from volumetric.models.export import METADATA_FILE, WithActivation, save_torchscript, to_torchscript
from volumetric.models.factory import build_network
from volumetric.models.registry import architectures, build_model, canonical_name
from volumetric.models.transfer import (
    FreezeSpec,
    describe,
    freeze,
    hold_frozen_norms,
    layers,
    load_initial_weights,
    parse_freeze,
)

TINY = {"depth": 2, "features": 4}


@pytest.mark.parametrize(
    ("name", "config", "shape"),
    [
        ("unet2d", {}, (2, 1, 16, 16)),
        ("unet2d", {"norm": "instance", "activation": "leakyrelu", "dropout": 0.2}, (1, 2, 13, 22)),
        ("unet3d", {}, (1, 1, 8, 12, 16)),
        ("unet3d", {"residual": True, "norm": "none"}, (2, 1, 5, 9, 7)),
        ("attention-resunet", {}, (1, 1, 8, 8, 8)),
        ("attention-resunet", {"spatial_dims": 2}, (1, 1, 17, 9)),
        ("attention-resunet2d", {}, (1, 1, 8, 8)),
        ("attention-resunet3d", {"out_channels": 3}, (1, 1, 6, 10, 8)),
    ],
)
def test_output_has_input_size_and_script_agrees(name, config, shape):
    config = {"in_channels": shape[1], **TINY, **config}
    model = build_model(name, **config).eval()
    x = torch.randn(*shape)
    y = model(x)
    assert y.shape == (shape[0], config.get("out_channels", 1), *shape[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), y)


def test_builtin_names_are_registered():
    assert {"unet2d", "unet3d", "attention-resunet"} <= set(architectures())


def test_padding_is_only_at_the_borders():
    # A size that needs padding gives the same interior as a size that does not, up to the
    # receptive-field reach of the padded border.
    torch.manual_seed(0)
    model = build_model("unet2d", depth=1, features=2, norm="none").eval()
    x = torch.randn(1, 1, 16, 16)
    full = model(x)
    assert model(x[..., :15]).shape == (1, 1, 16, 15)
    torch.testing.assert_close(model(x[..., :15])[..., :4], full[..., :4])


def test_attention_and_residual_add_parameters():
    plain = build_model("unet3d", **TINY)
    gated = build_model("attention-resunet", **TINY)
    names = {n for n, _ in gated.named_parameters()}
    assert any(".attention." in n for n in names) and any(".shortcut." in n for n in names)
    assert sum(p.numel() for p in gated.parameters()) > sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize(
    "config",
    [{"norm": "group"}, {"activation": "gelu"}, {"dropout": 1.5}, {"depth": 0}, {"spatial_dims": 4},
     {"kernel": 5}],
)
def test_bad_configuration_is_an_input_error(config):
    name = "attention-resunet" if "spatial_dims" in config else "unet3d"
    with pytest.raises(InputError, match="does not accept"):
        build_model(name, **config)


def test_output_activation_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = build_model("unet2d", **TINY).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, net, architecture="unet2d",
                    model_config={**TINY, "output_activation": "sigmoid"},
                    spatial_dims=2, in_channels=1, out_channels=1)
    rebuilt = model_from_checkpoint(read_checkpoint(path)).eval()
    x = torch.randn(1, 1, 12, 12)
    torch.testing.assert_close(rebuilt(x), torch.sigmoid(net(x)))


def test_torchscript_file_carries_metadata(tmp_path):
    net = build_model("unet3d", **TINY)
    wrapped = WithActivation(net, "sigmoid")
    x = torch.randn(1, 1, 8, 8, 8)
    scripted = to_torchscript(wrapped, x)
    assert net.training, "exporting must not change the caller's model"
    save_torchscript(scripted, tmp_path / "m.ts", {"spatial_dims": 3})
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(tmp_path / "m.ts"), _extra_files=extra)
    assert json.loads(extra[METADATA_FILE]) == {"spatial_dims": 3}
    torch.testing.assert_close(loaded(torch.randn(1, 1, 6, 10, 9)).shape, (1, 1, 6, 10, 9))
    torch.testing.assert_close(loaded(x), torch.sigmoid(net.eval()(x)))


class _Unscriptable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, *extra):  # varargs cannot be scripted
        return self.conv(x)


def test_unscriptable_model_is_traced_with_a_warning():
    model = _Unscriptable()
    x = torch.randn(1, 1, 8, 8)
    with pytest.warns(UserWarning, match="tracing"):
        traced = to_torchscript(model, x)
    torch.testing.assert_close(traced(x), model(x))


def test_custom_factory(tmp_path):
    config = {"in_channels": 1, "out_channels": 2, "kernel_size": 1}
    model = build_network("torch.nn:Conv3d", config)
    assert isinstance(model, torch.nn.Conv3d)
    with pytest.raises(InputError, match="cannot import"):
        build_network("no_such_module_xyz:f", {})
    with pytest.raises(InputError, match="no callable"):
        build_network("torch.nn:NoSuchThing", {})
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        build_network("builtins:dict", {})


@pytest.mark.parametrize(("spec", "parsed"), [
    ("encoder", FreezeSpec("encoder")),
    ("Decoder", FreezeSpec("decoder")),
    ("all-but-last-3", FreezeSpec("last", 3)),
    ("last-3", FreezeSpec("last", 3)),
    ("none", FreezeSpec("none")),
    ("encoder.0, decoder.1.up", FreezeSpec("names", names=("encoder.0", "decoder.1.up"))),
])
def test_parse_freeze(spec, parsed):
    assert parse_freeze(spec) == parsed


@pytest.mark.parametrize("spec", ["all-but-last-0", "last-0", "all-but-last-x", "a,,b", ""])
def test_parse_freeze_refuses(spec):
    with pytest.raises(InputError, match="--freeze"):
        parse_freeze(spec)


def _trained(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_encoder_decoder_and_names():
    model = build_model("unet3d", **TINY)
    freeze(model, "encoder")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("encoder.", "bottleneck.")) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("decoder."))

    model = build_model("unet2d", **TINY)
    freeze(model, "decoder")
    assert _trained(model) == {n for n, _ in model.named_parameters()
                               if n.startswith(("encoder.", "bottleneck."))}

    model = build_model("unet2d", **TINY)
    freeze(model, "encoder.0,decoder.1.up")
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith(("encoder.0.", "decoder.1.up."))}
    with pytest.raises(InputError, match="--freeze decoder.9: UNet has no module"):
        freeze(build_model("unet2d", **TINY), "decoder.9")


@pytest.mark.parametrize(("name", "shape"), [("unet2d", (1, 1, 16, 16)),
                                              ("unet3d", (1, 1, 8, 8, 8)),
                                              ("attention-resunet2d", (1, 1, 16, 16))])
@pytest.mark.parametrize("count", [1, 3, 4])
def test_freeze_last_counts_layers_with_weights_in_forward_order(name, shape, count):
    model = build_model(name, **TINY)
    states = freeze(model, f"last-{count}", torch.zeros(shape))
    modules = dict(model.named_modules())
    # The report is exactly requires_grad, module by module.
    for state in states:
        params = list(modules[state.name].parameters(recurse=False))
        assert state.parameters == sum(p.numel() for p in params)
        assert all(p.requires_grad == state.trained for p in params), state
    norms = (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    layers = [s for s in states if not isinstance(modules[s.name], norms)]
    assert [s.trained for s in layers] == [False] * (len(layers) - count) + [True] * count
    trained = [s.name for s in layers if s.trained]
    assert trained[-1] == "head"
    ups = [s.name for s in layers if s.name.endswith(".up")]
    # The last transposed convolution trains exactly when it is among the last `count` layers.
    assert (ups[-1] in trained) == (ups[-1] in [s.name for s in layers[-count:]])
    if name == "unet2d":
        assert (ups[-1] in trained) == (count >= 4)
    assert sum(s.parameters for s in states if s.trained) == sum(
        p.numel() for p in model.parameters() if p.requires_grad)


def test_freeze_last_beyond_the_layer_count():
    model = build_model("unet3d", **TINY)
    count = len(layers(model))
    assert all(s.trained for s in freeze(model, f"last-{count}"))
    with pytest.raises(InputError, match=f"only {count} layers"):
        freeze(build_model("unet3d", **TINY), f"last-{count + 1}")


def test_forward_order_beats_definition_order():
    class Backwards(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.late = torch.nn.Linear(3, 1)
            self.early = torch.nn.Linear(2, 3)

        def forward(self, x):
            return self.late(self.early(x))

    model = Backwards()
    freeze(model, "last-1", torch.zeros(1, 2))
    assert _trained(model) == {"late.weight", "late.bias"}
    model = Backwards()
    freeze(model, "last-1")
    assert _trained(model) == {"early.weight", "early.bias"}


def test_describe_names_trained_modules_and_frozen_subtrees():
    model = build_model("unet2d", **TINY)
    line = describe(model, freeze(model, "last-1"))
    assert line.startswith("training 5 of ") and "head (5)" in line
    assert line.endswith("frozen: encoder, bottleneck, decoder")


def test_frozen_batch_norm_keeps_its_statistics():
    model = build_model("unet2d", **TINY)
    freeze(model, "encoder")
    model.train()
    hold_frozen_norms(model)
    before = model.encoder[0].norm1.running_mean.clone()
    model(torch.randn(2, 1, 16, 16) * 5 + 3)
    torch.testing.assert_close(model.encoder[0].norm1.running_mean, before)
    assert model.decoder[0].block.norm1.training


def test_initial_weights_from_checkpoint():
    source = build_model("unet3d", **TINY)
    payload = {"architecture": "unet3d", "state_dict": source.state_dict()}
    target = build_model("unet3d", **TINY)
    load_initial_weights(target, payload, "unet3d", source="a.pt")
    for a, b in zip(source.parameters(), target.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(InputError, match="holds a network of architecture unet3d, not unet2d"):
        load_initial_weights(build_model("unet2d", **TINY), payload, "unet2d", source="a.pt")
    with pytest.raises(InputError, match="weights do not fit"):
        load_initial_weights(build_model("unet3d", depth=2, features=8), payload, "unet3d",
                             source="a.pt")


@pytest.mark.parametrize(("spelling", "name"), [("attention-resunet-2d", "attention-resunet2d"),
                                                ("attention-resunet3d", "attention-resunet3d"),
                                                ("unet-2d", "unet2d"),
                                                ("attention-resunet", "attention-resunet"),
                                                ("pkg.mod:net-2d", "pkg.mod:net-2d")])
def test_architecture_names_with_or_without_a_dash(spelling, name):
    assert canonical_name(spelling) == name


def test_train_takes_the_dashed_spelling():
    from volumetric.ops.train import ModelChoice, _architecture

    assert _architecture(ModelChoice("attention-resunet-2d"), 2, None) == "attention-resunet2d"
    assert isinstance(build_model("attention-resunet-2d", **TINY), torch.nn.Module)
    with pytest.raises(InputError, match="--model attention-resunet2d needs 2D patches"):
        _architecture(ModelChoice("attention-resunet-2d"), 3, None)
