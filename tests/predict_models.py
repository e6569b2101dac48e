"""Tiny models for the prediction tests.

This folder is on the path of the test cluster's workers, so ``module:factory``
names and the architecture registered here work in block tasks too (tests
import this module on the workers with ``client.run``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from volumetric.models.registry import register

FLAKY_FLAG = Path(tempfile.gettempdir()) / f"volumetric-flaky-model-{os.getuid()}"


def tiny(in_channels: int = 1, out_channels: int = 2, dims: int = 3) -> nn.Module:
    """A seeded one-layer convolution with a sigmoid: probabilities in 0..1."""
    torch.manual_seed(0)
    conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(in_channels, out_channels, 3, padding=1)
    return nn.Sequential(conv, nn.Sigmoid())


register("test-tiny")(tiny)


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint whose architecture, if imported and called, would create ``marker``."""
    torch.save({"format": "volumetric-checkpoint", "version": 1, "architecture": "os:system",
                "model_config": {"command": f"touch {marker}"}, "state_dict": {},
                "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "preprocess": {},
                "training": {}}, path)
    return path


def save_torchscript(model: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(model), str(path))
    return path


class Flaky(nn.Module):
    """:func:`tiny`, except that while FLAKY_FLAG exists it fails after the number of calls it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if FLAKY_FLAG.exists():
            self.calls += 1
            if self.calls > int(FLAKY_FLAG.read_text()):
                raise RuntimeError("simulated worker crash")
        return self.net(x)


def flaky() -> nn.Module:
    return Flaky()


class Shrinking(nn.Module):
    """Returns a window smaller than its input (a convolution without padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class NaNAbove(nn.Module):
    """Identity, but NaN wherever the input exceeds 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 3, torch.full_like(x, float("nan")), x)
