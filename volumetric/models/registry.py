"""Named model architectures, so checkpoints can rebuild the network they came from."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from volumetric.errors import InputError, check_choice

_ARCHITECTURES: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a factory ``f(**config) -> torch.nn.Module`` under ``name``."""

    def add(factory: Callable[..., Any]) -> Callable[..., Any]:
        _ARCHITECTURES[name] = factory
        return factory

    return add


def architectures() -> list[str]:
    """Names of the registered architectures."""
    _load_builtins()
    return sorted(_ARCHITECTURES)


def canonical_name(name: str) -> str:
    """The registered spelling of an architecture written with or without a dash before 2d/3d.

    Examples
    --------
    >>> canonical_name("attention-resunet-2d"), canonical_name("unet-3d")
    ('attention-resunet2d', 'unet3d')
    >>> canonical_name("mypkg.nets:net-2d")
    'mypkg.nets:net-2d'
    """
    _load_builtins()
    match = re.fullmatch(r"(.+?)-?([23]d)", name)
    if name in _ARCHITECTURES or match is None:
        return name
    for candidate in (match[1] + match[2], f"{match[1]}-{match[2]}"):
        if candidate in _ARCHITECTURES:
            return candidate
    return name


def build_model(name: str, **config: Any) -> Any:
    """Instantiate the architecture ``name`` (either spelling, see :func:`canonical_name`).

    Raises
    ------
    InputError
        Unknown architecture, or a config it does not accept.
    """
    name = canonical_name(name)
    check_choice(name, sorted(_ARCHITECTURES), "model")
    try:
        return _ARCHITECTURES[name](**config)
    except (TypeError, ValueError) as exc:
        raise InputError(f"model {name!r} does not accept this configuration: {exc}") from None


def _load_builtins() -> None:
    """Import the modules that register the built-in architectures."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


# Modules whose import registers built-in architectures.
_BUILTIN_MODULES: tuple[str, ...] = ("volumetric.models.unet", "volumetric.models.matching")
