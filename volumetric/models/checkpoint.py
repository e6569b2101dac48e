"""The checkpoint format of ``vol train``, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values, never a
pickled object, so loading it cannot run code::

    {
      "format": "volumetric-checkpoint",
      "version": 1,
      "architecture": "unet3d",            # a name in volumetric.models.registry
      "model_config": {...},               # keyword arguments of the factory
      "state_dict": {...},                 # model weights
      "spatial_dims": 3,                   # 2: (N, C, Y, X) input, 3: (N, C, Z, Y, X)
      "in_channels": 1,
      "out_channels": 1,
      "preprocess": {"normalize": "percentile", ...},   # what the input expects
      "target": {"kind": "image", "normalize": "percentile", "stats": [...], ...},
                                           # what the output means (vol train)
      "training": {...}                    # optional: optimizer state, epoch, metrics...
    }

Only built-in (registered) architectures are rebuilt from a checkpoint's
own fields. A checkpoint of a custom ``module:factory`` network is loaded
by naming the factory (``--model module:factory --weights model.pt``): a
file never makes volumetric import or call what it names.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from volumetric.errors import InputError
from volumetric.models.registry import architectures, build_model
from volumetric.models.torch_messages import state_dict_problem

FORMAT = "volumetric-checkpoint"
VERSION = 1
_FIELDS = {"architecture": str, "model_config": dict, "state_dict": dict, "spatial_dims": int,
           "in_channels": int, "out_channels": int}


def save_checkpoint(
    path: str | Path,
    model: Any,
    *,
    architecture: str,
    model_config: dict[str, Any],
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    preprocess: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` and what is needed to rebuild it, atomically."""
    import torch

    payload = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture,
        "model_config": dict(model_config),
        "state_dict": model.state_dict(),
        "spatial_dims": int(spatial_dims),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "preprocess": dict(preprocess or {}),
        "target": dict(target or {}),
        "training": dict(training or {}),
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), not a pickle of weights."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_weights_only(path: str | Path, *, map_location: str = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain values, never code.

    Raises
    ------
    InputError
        Missing file, a TorchScript file, an unsafe pickle, or a file torch cannot read.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if is_torchscript(path):
        raise InputError(f"{path} is a TorchScript file, not a checkpoint or state dict of "
                         "weights; give a checkpoint such as a run's model.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            f"refusing to load {path}: it holds pickled objects, not plain weights "
            "(unsafe to load); export it as TorchScript or a state dict"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable torch file ({first})") from None


def is_checkpoint(payload: Any) -> bool:
    """Whether a loaded object is a volumetric checkpoint dict."""
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def read_checkpoint(path: str | Path, *, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``).

    Raises
    ------
    InputError
        Missing file, an unsafe pickle, or a file that is not a volumetric checkpoint.
    """
    payload = load_weights_only(path, map_location=map_location)
    return check_checkpoint(payload, path)


def check_checkpoint(payload: Any, path: str | Path) -> dict[str, Any]:
    """Return ``payload`` if it is a checkpoint this version can read.

    Raises
    ------
    InputError
        Not a volumetric checkpoint, or one from a newer format.
    """
    if not is_checkpoint(payload):
        raise InputError(f"{path} is not a volumetric checkpoint")
    if payload.get("version", 0) > VERSION:
        raise InputError(f"{path} was written by a newer volumetric (format {payload['version']})")
    wrong = [key for key, kind in _FIELDS.items() if not isinstance(payload.get(key), kind)]
    if wrong:
        raise InputError(f"{path} is a damaged volumetric checkpoint (bad {', '.join(wrong)})")
    return payload


def registered_architecture(payload: dict[str, Any], path: str | Path, *,
                            option: str = "--weights") -> str:
    """The checkpoint's architecture, if it is one volumetric may build from the file alone.

    Parameters
    ----------
    payload : dict
        A checkpoint (see :func:`check_checkpoint`).
    path : str or Path
        Where it comes from, for the message.
    option : str
        The option that loads such a checkpoint into a named factory.

    Raises
    ------
    InputError
        The checkpoint names a custom ``module:factory`` or an unknown architecture.
    """
    name = payload["architecture"]
    if name not in architectures():
        raise InputError(
            f"{path} holds a network of architecture {name!r}, which is not built in "
            f"({', '.join(architectures())}); a checkpoint of your own model loads only with "
            f"its factory named: --model module:factory {option} {path}"
        )
    return name


def model_from_checkpoint(payload: dict[str, Any], path: str | Path = "the checkpoint") -> Any:
    """Rebuild the built-in network of a checkpoint dict with its weights.

    Raises
    ------
    InputError
        A checkpoint of a custom or unknown architecture, or weights that do not fit it.
    """
    name = registered_architecture(payload, path)
    model = build_model(name, **payload["model_config"])
    load_state(model, payload["state_dict"], misfit=f"{path}: the weights do not fit {name}")
    return model


def load_state(model: Any, state: dict[str, Any], *, misfit: str) -> None:
    """``model.load_state_dict(state)``, with weights that do not fit as one clear line.

    Raises
    ------
    InputError
        ``misfit``, then the first problem torch lists (missing or unexpected keys, a shape).
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{misfit}: {state_dict_problem(exc)}") from None
