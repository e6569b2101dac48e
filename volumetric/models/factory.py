"""Build a network from a registered name or a user's ``module:factory``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from volumetric.errors import InputError
from volumetric.models.registry import build_model


def is_custom(name: str) -> bool:
    """Whether ``name`` is a ``module:factory`` reference rather than a registered architecture."""
    return ":" in name


def load_factory(spec: str) -> Callable[..., Any]:
    """Import the callable named by ``"package.module:function"``.

    Raises
    ------
    InputError
        The module cannot be imported or has no such callable.
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"--model {spec}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"--model {spec}: {module_name} has no callable {attr!r}")
    return factory


def build_network(name: str, config: dict[str, Any]) -> Any:
    """A ``torch.nn.Module`` from a registered architecture or a ``module:factory``.

    Raises
    ------
    InputError
        Unknown name, a config the factory refuses, or a factory returning no module.
    """
    from torch import nn

    if not is_custom(name):
        return build_model(name, **config)
    try:
        model = load_factory(name)(**config)
    except (TypeError, ValueError) as exc:
        raise InputError(f"--model {name} does not accept this configuration: {exc}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {name} returned {type(model).__name__}, not a torch.nn.Module")
    return model
