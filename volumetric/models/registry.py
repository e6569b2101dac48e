"""Named model architectures, so checkpoints can rebuild the network they came from."""

from __future__ import annotations

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


def build_model(name: str, **config: Any) -> Any:
    """Instantiate the architecture ``name`` with ``config``.

    Raises
    ------
    InputError
        Unknown architecture, or a config it does not accept.
    """
    _load_builtins()
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
_BUILTIN_MODULES: tuple[str, ...] = ("volumetric.models.unet",)
