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
``target``. The architecture is registered as ``matcher``, so a checkpoint of ``vol
train-matcher`` rebuilds it (:func:`volumetric.models.checkpoint.model_from_checkpoint`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from volumetric.models.registry import register
from volumetric.models.warps import PARAMETERS, check_kind, identity_theta, transform_points

ARCHITECTURE = "matcher"  # the registered name
GRID_POINTS = 20
NORMALIZE_PERCENTILES = (1.0, 99.8)


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


def correlation(a: torch.Tensor, b: torch.Tensor, normalise: bool = True) -> torch.Tensor:
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

    def forward(self, source: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``theta`` of shape ``(B, 6)`` or ``(B, 18)`` for images ``(B, C, H, W)``.

        Without ``target``, ``source`` is the pair stacked along the channels,
        ``(B, 2 C, H, W)`` (source channels first), as training batches hold it.
        """
        if target is None:
            source, target = source.chunk(2, dim=1)
        expected = list(self.input_shape)
        if list(source.shape[1:]) != expected or list(target.shape[1:]) != expected:
            raise ValueError(f"the images have shapes {list(source.shape[1:])} and "
                             f"{list(target.shape[1:])}, the matcher takes {expected}")
        return self.head(correlation(self.extractor(source), self.extractor(target)))


@register(ARCHITECTURE)
def build_matcher(kind: str = "affine", input_shape: tuple[int, int, int] = (2, 240, 240),
                  features: int = 16, depth: int = 4,
                  head_features: tuple[int, int] = (128, 64),
                  dropout: float = 0.0, output_activation: str = "none") -> GeometricMatcher:
    """The registered factory of :class:`GeometricMatcher` (arguments as there).

    ``output_activation`` (stored by the training loop with every network) must be
    ``"none"``: a matcher outputs transformation parameters.
    """
    if output_activation != "none":
        raise ValueError(f"a matcher has no output activation, got {output_activation!r}")
    return GeometricMatcher(kind, tuple(input_shape), features=features, depth=depth,
                            head_features=tuple(head_features), dropout=dropout)


def kind_of(theta: torch.Tensor) -> str:
    """``"affine"`` or ``"tps"`` from the number of parameters of ``theta (B, 6 or 18)``."""
    for kind, size in PARAMETERS.items():
        if theta.shape[-1] == size:
            return kind
    raise ValueError(f"theta has {theta.shape[-1]} parameters; expected 6 or 18")


def grid(points: int = GRID_POINTS, *, dtype: torch.dtype = torch.float32,
         device: torch.device | str = "cpu") -> torch.Tensor:
    """``points x points`` positions spread evenly over ``[-1, 1]^2``, ``(points**2, 2)``.

    Each row is ``(x, y)``, row-major in ``y``.
    """
    axis = torch.linspace(-1, 1, points, dtype=dtype, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def grid_distance(theta: torch.Tensor, moved_true: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the :func:`grid` moved by ``theta`` and ``moved_true``.

    The grid loss of :func:`grid_loss` against any true mapping, not only one of the
    matcher's kind: ``moved_true (B, points**2, 2)`` holds where the true transformation
    takes the grid's points (e.g. a random non-rigid warp). The kind of ``theta`` follows
    from its size (:func:`kind_of`).
    """
    points = round(moved_true.shape[1] ** 0.5)
    if points * points != moved_true.shape[1]:
        raise ValueError(f"moved_true holds {moved_true.shape[1]} points, not a square grid")
    moved = transform_points(theta.float(), grid(points, device=theta.device), kind_of(theta))
    return (moved - moved_true).square().sum(dim=-1).mean()


def matcher_input(projection: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A frame's ``(C, Y, X)`` projection as the matcher sees it: ``(C, *size)`` float32.

    Each channel is scaled by its own 1st and 99.8th percentiles to about [0, 1] (frames
    differ in brightness), then resized with antialiasing. Normalised coordinates are
    unchanged by the resize, so a transformation predicted at ``size`` holds at the
    frame's own size.
    """
    data = projection.astype(np.float32, copy=False)
    low, high = np.percentile(data, NORMALIZE_PERCENTILES, axis=(1, 2), keepdims=True)
    scaled = torch.from_numpy(((data - low) / np.maximum(high - low, 1e-6)).astype(np.float32))
    if tuple(scaled.shape[1:]) == tuple(size):
        return scaled.contiguous()
    return F.interpolate(scaled[None], size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True)[0]


def grid_loss(theta_pred: torch.Tensor, theta_true: torch.Tensor, kind: str,
              points: int = GRID_POINTS) -> torch.Tensor:
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
    points_xy = grid(points, dtype=theta_pred.dtype, device=theta_pred.device)
    moved_pred = transform_points(theta_pred, points_xy, kind)
    moved_true = transform_points(theta_true, points_xy, kind)
    return (moved_pred - moved_true).square().sum(dim=-1).mean()
