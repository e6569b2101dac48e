"""CNNGeometric-style matching of two 2D images.

After Rocco, Arandjelovic and Sivic, "Convolutional neural network architecture for
geometric matching" (CVPR 2017): one feature extractor applied to both images (Siamese),
features L2-normalised per position, a dense correlation of every position of one map
with every position of the other, normalised (ReLU, L2) and regressed to the parameters
of an affine (6) or thin-plate-spline (18) transformation. Training minimises
:func:`grid_loss`. Here the extractor is a small CNN trained from scratch on the real
channels of the images (e.g. two fluorescence channels) rather than a pretrained RGB network.

The transformation conventions (normalised ``(x, y)`` coordinates, target-to-source
mapping, layout of ``theta``) are those of :mod:`volumetric.models.warps`:
``warp(source, transform_grid(matcher(source, target), target_size, kind))`` approximates
``target``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from volumetric.models.warps import PARAMETERS, check_kind, identity_theta, transform_points


class FeatureExtractor(nn.Module):
    """A small CNN: ``depth`` stages of (conv 3, BatchNorm, LeakyReLU, max-pool 2).

    Parameters
    ----------
    in_channels : int
        Channels of the images.
    features : int
        Channels of the first stage; each further stage doubles them.
    depth : int
        Number of stages, hence of 2x downsamplings.

    The output, ``(B, features * 2**(depth - 1), H // 2**depth, W // 2**depth)``, has unit
    L2 norm over the channels at every position.
    """

    def __init__(self, in_channels: int = 2, *, features: int = 16, depth: int = 4):
        super().__init__()
        if in_channels < 1 or features < 1 or depth < 1:
            raise ValueError("in_channels, features and depth must be positive")
        widths = [features * 2**stage for stage in range(depth)]
        self.layers = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                          nn.LeakyReLU(0.01, inplace=True), nn.MaxPool2d(2))
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths)
        ))
        self.out_channels = widths[-1]
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(x), dim=1)


def correlation(a: torch.Tensor, b: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """Dense correlation of every position of ``a`` with every position of ``b``.

    Parameters
    ----------
    a : torch.Tensor
        Features ``(B, C, ha, wa)``.
    b : torch.Tensor
        Features ``(B, C, hb, wb)``.
    normalise : bool
        Apply ReLU, then L2 normalisation over the correlation channels (as Rocco et al.).

    Returns
    -------
    torch.Tensor
        ``(B, ha * wa, hb, wb)``: channel ``k = y * wa + x`` (row-major position in ``a``)
        at ``(i, j)`` holds the scalar product of ``a[:, :, y, x]`` and ``b[:, :, i, j]``.
    """
    batch, _, hb, wb = b.shape
    scores = torch.bmm(a.flatten(2).transpose(1, 2), b.flatten(2))
    scores = scores.reshape(batch, -1, hb, wb)
    return F.normalize(F.relu(scores), dim=1) if normalise else scores


class RegressionHead(nn.Module):
    """Correlation map to transformation parameters, initialised to the identity.

    Two (conv 3, BatchNorm, ReLU) layers, optional dropout, then a linear layer whose weights
    are zero and whose bias is the identity ``theta``, so an untrained head outputs the
    identity transformation.

    Parameters
    ----------
    in_channels : int
        Channels of the correlation map (positions of the first feature map).
    map_size : tuple of int
        ``(h, w)`` of the correlation map.
    kind : {"affine", "tps"}
        Outputs 6 (affine) or 18 (thin-plate spline) parameters, see
        :mod:`volumetric.models.warps`.
    features : tuple of int
        Channels of the two convolutions.
    dropout : float
        Dropout probability before the linear layer (0 disables it).
    """

    def __init__(self, in_channels: int, map_size: tuple[int, int], kind: str = "affine", *,
                 features: tuple[int, int] = (128, 64), dropout: float = 0.0):
        super().__init__()
        check_kind(kind)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        first, second = features
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1, bias=False), nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
            nn.Conv2d(first, second, 3, padding=1, bias=False), nn.BatchNorm2d(second),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(second * map_size[0] * map_size[1], PARAMETERS[kind])
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(identity_theta(kind)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(self.convs(x).flatten(1)))


class GeometricMatcher(nn.Module):
    """Predict the transformation bringing ``source`` onto ``target`` (CNNGeometric).

    Parameters
    ----------
    kind : {"affine", "tps"}
        Transformation predicted.
    input_shape : tuple of int
        ``(C, H, W)`` of both images; fixed, since the head sees the whole correlation map.
    features, depth : int
        Of the :class:`FeatureExtractor`.
    head_features : tuple of int
        Of the :class:`RegressionHead`.
    dropout : float
        Of the :class:`RegressionHead`.
    """

    def __init__(self, kind: str = "affine", input_shape: tuple[int, int, int] = (2, 240, 240),
                 *, features: int = 16, depth: int = 4,
                 head_features: tuple[int, int] = (128, 64), dropout: float = 0.0):
        super().__init__()
        check_kind(kind)
        channels, height, width = input_shape
        map_size = (height // 2**depth, width // 2**depth)
        if min(map_size) < 1:
            raise ValueError(f"input_shape {input_shape} is too small for depth {depth}")
        self.kind = kind
        self.input_shape = tuple(input_shape)
        self.extractor = FeatureExtractor(channels, features=features, depth=depth)
        self.head = RegressionHead(map_size[0] * map_size[1], map_size, kind,
                                   features=head_features, dropout=dropout)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``theta`` of shape ``(B, 6)`` or ``(B, 18)`` for images ``(B, C, H, W)``."""
        for name, image in (("source", source), ("target", target)):
            if tuple(image.shape[1:]) != self.input_shape:
                raise ValueError(f"{name} has shape {tuple(image.shape[1:])}, "
                                 f"the matcher takes {self.input_shape}")
        return self.head(correlation(self.extractor(source), self.extractor(target)))


def grid_loss(theta_pred: torch.Tensor, theta_true: torch.Tensor, kind: str,
              points: int = 20) -> torch.Tensor:
    """Mean squared distance between grid points moved by two transformations.

    The loss of Rocco et al.: ``points x points`` positions evenly spaced over ``[-1, 1]^2``
    are moved by ``theta_pred`` and by ``theta_true``; the result is the squared Euclidean
    distance (normalised coordinates) averaged over points and batch. Zero for equal
    transformations, symmetric in its two arguments.

    Parameters
    ----------
    theta_pred, theta_true : torch.Tensor
        ``(B, 6)`` or ``(B, 18)``, see :mod:`volumetric.models.warps`.
    kind : {"affine", "tps"}
        Kind of both transformations.
    points : int
        Points per axis.
    """
    axis = torch.linspace(-1, 1, points, dtype=theta_pred.dtype, device=theta_pred.device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)
    moved_pred = transform_points(theta_pred, grid, kind)
    moved_true = transform_points(theta_true, grid, kind)
    return (moved_pred - moved_true).square().sum(dim=-1).mean()
