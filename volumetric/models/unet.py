"""U-Nets for 2D and 3D patches: plain, residual, and with attention gates.

Registered architectures (see :mod:`volumetric.models.registry`):

``unet2d``, ``unet3d``
    The U-Net of Ronneberger et al. / Cicek et al.
``attention-resunet`` (``spatial_dims`` 3 by default, 2 allowed)
    Residual blocks and attention gates on the skip connections (Oktay et al.);
    ``attention-resunet2d`` and ``attention-resunet3d`` fix the dimensionality.

Every network is scriptable with ``torch.jit.script``. Inputs of any size are
accepted: each spatial axis is padded (edge values repeated, split evenly
before and after) to the next multiple of ``2**depth`` and the output is
cropped back, so the output always has the input's spatial shape. Batch and
instance norm need more than one value per channel at the deepest level:
give patches of at least ``2**(depth + 1)`` along some axis when training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from volumetric.models.registry import register

NORMS = ("batch", "instance", "none")
ACTIVATIONS = ("relu", "leakyrelu")
OUTPUT_ACTIVATIONS = ("none", "sigmoid", "softmax")


def _layers(spatial_dims: int) -> dict[str, Any]:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if spatial_dims == 2:
        return {"conv": nn.Conv2d, "up": nn.ConvTranspose2d, "pool": nn.MaxPool2d,
                "batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}
    return {"conv": nn.Conv3d, "up": nn.ConvTranspose3d, "pool": nn.MaxPool3d,
            "batch": nn.BatchNorm3d, "instance": nn.InstanceNorm3d}


def _norm(spatial_dims: int, kind: str, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "instance":
        return _layers(spatial_dims)["instance"](channels, affine=True)
    return _layers(spatial_dims)["batch"](channels)


def _activation(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.01, inplace=True) if kind == "leakyrelu" else nn.ReLU(inplace=True)


class ConvBlock(nn.Module):
    """Two (conv 3, norm, activation) layers, dropout between them, optional residual path."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, norm: str,
                 activation: str, dropout: float, residual: bool):
        super().__init__()
        conv = _layers(spatial_dims)["conv"]
        bias = norm == "none"
        self.conv1 = conv(in_channels, out_channels, 3, padding=1, bias=bias)
        self.norm1 = _norm(spatial_dims, norm, out_channels)
        self.act1 = _activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = _norm(spatial_dims, norm, out_channels)
        self.act2 = _activation(activation)
        self.residual = residual
        self.shortcut = (
            conv(in_channels, out_channels, 1)
            if residual and in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.act1(self.norm1(self.conv1(x))))
        y = self.norm2(self.conv2(y))
        if self.residual:
            y = y + self.shortcut(x)
        return self.act2(y)


class AttentionGate(nn.Module):
    """Additive attention gate: skip features weighted by a map computed from the gating signal."""

    def __init__(self, spatial_dims: int, channels: int, inner: int):
        super().__init__()
        conv = _layers(spatial_dims)["conv"]
        self.gate = conv(channels, inner, 1)
        self.skip = conv(channels, inner, 1, bias=False)
        self.psi = conv(inner, 1, 1)

    def forward(self, gating: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.psi(F.relu(self.gate(gating) + self.skip(skip))))
        return skip * weights


class DecoderStage(nn.Module):
    """Upsample, (gate the skip,) concatenate with the skip and convolve."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, norm: str,
                 activation: str, dropout: float, residual: bool, attention: bool):
        super().__init__()
        self.up = _layers(spatial_dims)["up"](in_channels, out_channels, 2, stride=2)
        self.attention = (
            AttentionGate(spatial_dims, out_channels, max(out_channels // 2, 1))
            if attention else None
        )
        self.block = ConvBlock(spatial_dims, 2 * out_channels, out_channels, norm=norm,
                               activation=activation, dropout=dropout, residual=residual)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.attention is not None:
            skip = self.attention(x, skip)
        return self.block(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """A U-Net for ``(N, C, Y, X)`` (2D) or ``(N, C, Z, Y, X)`` (3D) input.

    Parameters
    ----------
    spatial_dims : {2, 3}
        Dimensionality of the convolutions.
    in_channels, out_channels : int
        Channels of the input and the output.
    depth : int
        Number of 2x downsamplings; the deepest level has ``features * 2**depth`` channels.
    features : int
        Channels of the first level.
    norm : {"batch", "instance", "none"}
        Normalisation after each convolution.
    activation : {"relu", "leakyrelu"}
        Non-linearity (LeakyReLU slope 0.01).
    dropout : float
        Dropout probability inside every block (0 disables it).
    residual : bool
        Residual blocks (a 1x1 projection where the channel count changes).
    attention : bool
        Attention gates on the skip connections.
    output_activation : {"none", "sigmoid", "softmax"}
        Applied to the output; ``vol train`` trains with ``"none"`` (logits) and
        stores the activation its loss implies for inference.
    """

    def __init__(self, spatial_dims: int = 3, *, in_channels: int = 1, out_channels: int = 1,
                 depth: int = 3, features: int = 16, norm: str = "batch",
                 activation: str = "relu", dropout: float = 0.0, residual: bool = False,
                 attention: bool = False, output_activation: str = "none"):
        super().__init__()
        for value, allowed, what in ((norm, NORMS, "norm"), (activation, ACTIVATIONS, "activation"),
                                     (output_activation, OUTPUT_ACTIVATIONS, "output_activation")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
        if depth < 1 or features < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("depth, features and channel counts must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers = _layers(spatial_dims)
        options = {"norm": norm, "activation": activation, "dropout": dropout, "residual": residual}
        widths = [features * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            ConvBlock(spatial_dims, c_in, c_out, **options)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1])
        )
        self.pool = layers["pool"](2)
        self.bottleneck = ConvBlock(spatial_dims, widths[-2], widths[-1], **options)
        self.decoder = nn.ModuleList(
            DecoderStage(spatial_dims, widths[level + 1], widths[level], attention=attention,
                         **options)
            for level in reversed(range(depth))
        )
        self.head = layers["conv"](widths[0], out_channels, 1)
        self.multiple = 2**depth
        self.output_activation = output_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pads: list[int] = []
        for n in size[::-1]:
            extra = (self.multiple - n % self.multiple) % self.multiple
            pads += [extra // 2, extra - extra // 2]
        padded = sum(pads) > 0
        if padded:
            x = F.pad(x, pads, mode="replicate")
        skips: list[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i, stage in enumerate(self.decoder):
            x = stage(x, skips[len(skips) - 1 - i])
        x = self.head(x)
        if padded:
            x = _crop(x, pads)
        if self.output_activation == "sigmoid":
            x = torch.sigmoid(x)
        elif self.output_activation == "softmax":
            x = torch.softmax(x, dim=1)
        return x


def _crop(x: torch.Tensor, pads: list[int]) -> torch.Tensor:
    """Undo ``F.pad(x, pads)`` (pads listed from the last axis backwards)."""
    dims = x.dim()
    for i in range(len(pads) // 2):
        axis = dims - 1 - i
        x = x.narrow(axis, pads[2 * i], x.shape[axis] - pads[2 * i] - pads[2 * i + 1])
    return x


@register("unet2d")
def unet2d(**config: Any) -> UNet:
    """2D U-Net; ``config`` as for :class:`UNet` (without ``spatial_dims``)."""
    return UNet(2, **config)


@register("unet3d")
def unet3d(**config: Any) -> UNet:
    """3D U-Net; ``config`` as for :class:`UNet` (without ``spatial_dims``)."""
    return UNet(3, **config)


@register("attention-resunet")
def attention_resunet(spatial_dims: int = 3, **config: Any) -> UNet:
    """Attention Res-U-Net: residual blocks and attention-gated skips."""
    return UNet(spatial_dims, residual=True, attention=True, **config)


@register("attention-resunet2d")
def attention_resunet2d(**config: Any) -> UNet:
    """2D Attention Res-U-Net."""
    return attention_resunet(2, **config)


@register("attention-resunet3d")
def attention_resunet3d(**config: Any) -> UNet:
    """3D Attention Res-U-Net."""
    return attention_resunet(3, **config)
