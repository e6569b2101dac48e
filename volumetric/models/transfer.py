"""Transfer learning: start from a checkpoint's weights and freeze part of the network.

``--freeze`` spellings:

``encoder``
    The contracting path: the modules named ``encoder`` (and ``bottleneck``
    when the model has one), as in the built-in U-Nets.
``all-but-last-N``
    Everything except the last ``N`` convolution / linear layers (in the
    order the model defines its modules) and whatever is defined after the
    first of them (their norms, the head).
``none``
    Train everything (the default).

Frozen parameters get ``requires_grad = False``; frozen batch-norm layers
also keep their running statistics (:func:`hold_frozen_norms`).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from volumetric.errors import InputError
from volumetric.models.checkpoint import load_state

_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                  nn.ConvTranspose3d, nn.Linear)
_NORMS = (nn.modules.batchnorm._NormBase,)


def parse_freeze(spec: str) -> tuple[str, int]:
    """``"encoder"`` -> ``("encoder", 0)``, ``"all-but-last-2"`` -> ``("all-but-last", 2)``.

    Raises
    ------
    InputError
        Any other spelling.
    """
    spec = spec.strip().lower()
    if spec in ("none", "encoder"):
        return spec, 0
    match = re.fullmatch(r"all-but-last-(\d+)", spec)
    if not match or int(match.group(1)) < 1:
        raise InputError(f"--freeze {spec!r}: use encoder, all-but-last-N (N >= 1) or none")
    return "all-but-last", int(match.group(1))


def freeze(model: nn.Module, spec: str) -> int:
    """Freeze the parameters of ``model`` named by ``spec`` (in place); returns how many tensors.

    Raises
    ------
    InputError
        A bad spelling, a model without an encoder, or fewer layers than asked to train.
    """
    kind, keep = parse_freeze(spec)
    if kind == "none":
        return 0
    if kind == "encoder":
        parts = [getattr(model, name) for name in ("encoder", "bottleneck") if hasattr(model, name)]
        if not parts or not isinstance(parts[0], nn.Module):
            raise InputError(f"--freeze encoder: {type(model).__name__} has no 'encoder' module")
        params = [p for part in parts for p in part.parameters()]
    else:
        modules = list(model.modules())
        layers = [i for i, m in enumerate(modules) if isinstance(m, _WEIGHT_LAYERS)]
        if keep >= len(layers):
            raise InputError(
                f"--freeze {spec}: the model has only {len(layers)} convolution/linear layers"
            )
        first_trained = layers[-keep]
        params = [p for m in modules[:first_trained] for p in m.parameters(recurse=False)]
    for p in params:
        p.requires_grad_(False)
    return len(params)


def hold_frozen_norms(model: nn.Module) -> None:
    """Put norm layers whose parameters are all frozen in eval mode (call after ``train()``)."""
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, _NORMS) and params and not any(p.requires_grad for p in params):
            module.eval()


def load_initial_weights(model: nn.Module, payload: dict[str, Any], architecture: str,
                         *, source: str) -> None:
    """Load a checkpoint's weights into ``model`` (an ``architecture`` network).

    Raises
    ------
    InputError
        A checkpoint of another architecture, or weights of other shapes.
    """
    if payload["architecture"] != architecture:
        raise InputError(
            f"--init {source} holds a network of architecture {payload['architecture']}, not "
            f"{architecture}"
        )
    load_state(model, payload["state_dict"],
               misfit=f"--init {source}: weights do not fit this {architecture}")
