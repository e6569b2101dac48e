"""Transfer learning: start from a checkpoint's weights and freeze part of the network.

A *layer* is a module with weights of its own (a convolution, transposed
convolution, linear layer, ...); normalisation layers are not counted but
train or freeze with the layer they follow. Layers are listed in the order
the forward pass calls them (given an example input), else in the order the
model defines them.

``--freeze`` spellings:

``none``
    Train everything (the default).
``last-N`` (or ``all-but-last-N``)
    Train only the last ``N`` layers (with their norms); freeze the rest.
``encoder``
    Freeze the contracting path: the modules named ``encoder`` (and
    ``bottleneck`` when the model has one), as in the built-in U-Nets.
``decoder``
    Freeze the expanding path: the modules named ``decoder`` (and ``head``).
``NAME[,NAME...]``
    Freeze the named modules and every module inside them (``encoder.0``,
    ``decoder.1.up``); names as in ``model.named_modules()``.

Frozen parameters get ``requires_grad = False``; frozen batch-norm layers
also keep their running statistics (:func:`hold_frozen_norms`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from volumetric.errors import InputError
from volumetric.models.checkpoint import load_state

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
# The modules --freeze encoder / decoder name; the first must exist.
_PATHS = {"encoder": ("encoder", "bottleneck"), "decoder": ("decoder", "head")}
_USE = "use none, last-N (N >= 1), encoder, decoder or module names (encoder.0,decoder.1.up)"


@dataclass(frozen=True)
class FreezeSpec:
    """A parsed ``--freeze``: ``kind`` none, last, encoder, decoder or names."""

    kind: str
    count: int = 0
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleState:
    """A module with weights of its own: its name, parameter count and whether it trains."""

    name: str
    parameters: int
    trained: bool


def parse_freeze(spec: str) -> FreezeSpec:
    """Parse a ``--freeze`` value.

    Raises
    ------
    InputError
        ``last-0`` or a spelling that is neither a keyword nor module names.

    Examples
    --------
    >>> parse_freeze("all-but-last-3")
    FreezeSpec(kind='last', count=3, names=())
    >>> parse_freeze("encoder.0, head").names
    ('encoder.0', 'head')
    """
    text = spec.strip()
    if text.lower() in ("none", "encoder", "decoder"):
        return FreezeSpec(text.lower())
    match = re.fullmatch(r"(?:all-but-)?last-(\d+)", text.lower())
    if match:
        if int(match.group(1)) < 1:
            raise InputError(f"--freeze {spec!r}: {_USE}")
        return FreezeSpec("last", int(match.group(1)))
    names = tuple(name.strip() for name in text.split(","))
    if not all(re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", name) for name in names):
        raise InputError(f"--freeze {spec!r}: {_USE}")
    return FreezeSpec("names", names=names)


def _own_parameters(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters(recurse=False))


def _forward_order(model: nn.Module, example: torch.Tensor | None) -> list[tuple[str, nn.Module]]:
    """Modules with weights of their own, in the order ``model(example)`` first calls them.

    Modules the forward pass never calls come first, in definition order; without
    ``example`` the definition order is the order.
    """
    owners = [(name, m) for name, m in model.named_modules() if _own_parameters(m)]
    if example is None:
        return owners
    called: dict[int, int] = {}

    def note(module: nn.Module, args: Any) -> None:
        called.setdefault(id(module), len(called))

    hooks = [m.register_forward_pre_hook(note) for _, m in owners]
    mode = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(mode)
    rank = {id(m): i for i, (_, m) in enumerate(owners)}
    return sorted(owners, key=lambda item: (called.get(id(item[1]), -1), rank[id(item[1])]))


def layers(model: nn.Module,
           example: torch.Tensor | None = None) -> list[list[tuple[str, nn.Module]]]:
    """The layers of ``model`` in forward order, each with the norms that follow it.

    Parameters
    ----------
    model : torch.nn.Module
    example : torch.Tensor, optional
        An input batch; the forward pass (in eval mode, without gradients)
        decides the order. Without it, the order of definition.

    Returns
    -------
    list of list of (name, module)
        One list per layer: the layer first, then its norms.
    """
    groups: list[list[tuple[str, nn.Module]]] = []
    for name, module in _forward_order(model, example):
        if isinstance(module, _NORMS) and groups:
            groups[-1].append((name, module))
        else:
            groups.append([(name or "(model)", module)])
    return groups


def _frozen_paths(model: nn.Module, spec: FreezeSpec) -> tuple[str, ...]:
    """The module names whose subtrees ``spec`` freezes (encoder, decoder, names)."""
    if spec.kind in _PATHS:
        paths = tuple(p for p in _PATHS[spec.kind]
                      if isinstance(getattr(model, p, None), nn.Module))
        if not paths or paths[0] != _PATHS[spec.kind][0]:
            raise InputError(f"--freeze {spec.kind}: {type(model).__name__} has no "
                             f"{spec.kind!r} module")
        return paths
    known = {name for name, _ in model.named_modules() if name}
    for name in spec.names:
        if name not in known:
            top = ", ".join(name for name, _ in model.named_children())
            raise InputError(f"--freeze {name}: {type(model).__name__} has no module of that "
                             f"name; its modules are {top} and those inside them")
    return spec.names


def freeze(model: nn.Module, spec: str, example: torch.Tensor | None = None) -> list[ModuleState]:
    """Freeze the parameters of ``model`` that ``spec`` names (in place).

    Parameters
    ----------
    model : torch.nn.Module
    spec : str
        A ``--freeze`` value (see the module documentation).
    example : torch.Tensor, optional
        An input batch that fixes the forward order of the layers (``last-N``).

    Returns
    -------
    list of ModuleState
        Every module with weights of its own, in forward order, and whether it trains.

    Raises
    ------
    InputError
        A bad spelling, a model without the named modules, or fewer layers than asked to train.
    """
    parsed = parse_freeze(spec)
    groups = layers(model, example)
    frozen: list[nn.Module] = []
    if parsed.kind == "last":
        if parsed.count > len(groups):
            raise InputError(f"--freeze {spec}: the model has only {len(groups)} layers with "
                             "weights")
        frozen = [m for group in groups[:len(groups) - parsed.count] for _, m in group]
    elif parsed.kind != "none":
        paths = _frozen_paths(model, parsed)
        frozen = [m for name, m in model.named_modules()
                  if any(name == p or name.startswith(p + ".") for p in paths)]
    for module in frozen:
        for p in _own_parameters(module):
            p.requires_grad_(False)
    return [ModuleState(name, sum(p.numel() for p in _own_parameters(m)),
                        all(p.requires_grad for p in _own_parameters(m)))
            for group in groups for name, m in group]


def describe(model: nn.Module, states: list[ModuleState]) -> str:
    """One line: the modules that train (with parameter counts) and the frozen subtrees."""
    trained = [s for s in states if s.trained]
    total = sum(s.parameters for s in states)
    frozen: list[str] = []

    def walk(prefix: str, module: nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            frozen.append(prefix or "(model)")
            return
        for name, child in module.named_children():
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return (f"training {sum(s.parameters for s in trained):,} of {total:,} parameters in "
            f"{', '.join(f'{s.name} ({s.parameters:,})' for s in trained) or 'nothing'}; "
            f"frozen: {', '.join(frozen) or 'nothing'}")


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
