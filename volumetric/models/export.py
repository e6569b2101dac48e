"""TorchScript export of trained networks (``model.ts``), with their metadata inside.

The file loads with ``torch.jit.load`` alone; ``volumetric.json`` among its
extra files says what the input expects::

    extra = {"volumetric.json": ""}
    model = torch.jit.load("run/model.ts", _extra_files=extra)
    json.loads(extra["volumetric.json"])   # spatial_dims, channels, preprocess, ...
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

METADATA_FILE = "volumetric.json"


class WithActivation(nn.Module):
    """``net`` followed by an output activation: ``none``, ``sigmoid`` or ``softmax``."""

    def __init__(self, net: nn.Module, activation: str):
        super().__init__()
        if activation not in ("none", "sigmoid", "softmax"):
            raise ValueError(f"unknown output activation {activation!r}")
        self.net = net
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if self.activation == "sigmoid":
            return torch.sigmoid(y)
        if self.activation == "softmax":
            return torch.softmax(y, dim=1)
        return y


def to_torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Script ``model`` (eval mode, on CPU); trace it on ``example`` when it cannot be scripted.

    ``model`` itself is left as it is (a copy is exported). A traced model
    only accepts inputs shaped like ``example``.
    """
    model = copy.deepcopy(model).eval().cpu()
    with warnings.catch_warnings():
        # TorchScript is deprecated in recent torch releases but is the exchange format here.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.script(model)
        except Exception as exc:  # noqa: BLE001 - any scripting failure falls back to tracing
            warnings.warn(f"{type(model).__name__} is not scriptable ({type(exc).__name__}); "
                          f"tracing it for inputs shaped {tuple(example.shape)}", stacklevel=2)
            with torch.no_grad():
                return torch.jit.trace(model, example.cpu())


def save_torchscript(module: torch.jit.ScriptModule, path: str | Path,
                     metadata: dict[str, Any]) -> None:
    """Write ``module`` to ``path`` atomically, with ``metadata`` as ``volumetric.json``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, str(tmp), _extra_files={METADATA_FILE: json.dumps(metadata)})
    tmp.replace(path)
