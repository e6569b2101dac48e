"""What a training target is and how it becomes what the network learns.

============  ===============================================  ================================
kind          detected (``--target auto``)                     the network learns
============  ===============================================  ================================
``mask``      integer target with at most two values           its foreground (``--foreground``)
``labels``    integer target with more than two values, one    its foreground (``--foreground``)
              of them 0 (background)
``distance``  recorded as a distance map by ``vol distance``   the values (normalised on request)
``image``     any other target (float, or integer without 0)   the values, normalised
============  ===============================================  ================================

Detection reads a deterministic sample of chunks (see
:func:`volumetric.io.intensity.sample_chunks`). Image and distance targets
are normalised with volume-wide statistics pooled over every target; the
statistics are stored with the model (:meth:`TargetTransform.metadata`), so
predictions are written back in the target's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from volumetric.errors import InputError, check_choice
from volumetric.io.intensity import sample_chunks
from volumetric.io.ome import open_image
from volumetric.kernels.normalize import METHODS, affine, normalize
from volumetric.train.samplers import foreground_of, parse_foreground

KINDS = ("mask", "labels", "distance", "image")
BINARY_KINDS = ("mask", "labels")
PERCENTILES = (1.0, 99.8)


@dataclass(frozen=True)
class TargetSample:
    """Sampled values of one target image, one flat array per channel."""

    path: str
    dtype: str
    values: tuple[np.ndarray, ...]
    recorded: str | None = None

    @property
    def integer(self) -> bool:
        return np.dtype(self.dtype).kind in "biu"

    def distinct(self) -> np.ndarray:
        """The distinct sampled values (all channels)."""
        return np.unique(np.concatenate(self.values))

    def detect(self) -> str:
        """The kind of this target (see the module table)."""
        if self.integer:
            values = self.distinct()
            if len(values) <= 2:
                return "mask"
            if values[0] == 0:
                return "labels"
            return "image"
        return "distance" if self.recorded == "distance" else "image"

    def describe(self, kind: str) -> str:
        """What was seen, e.g. ``uint16, 30 ids`` or ``uint8, 0/255``."""
        if kind in BINARY_KINDS and self.integer:
            values = self.distinct()
            if kind == "labels":
                return f"{self.dtype}, {np.count_nonzero(values)} ids"
            return f"{self.dtype}, {'/'.join(f'{v:g}' for v in values)}"
        low, high = self.span()
        return f"{self.dtype}, {low:g}..{high:g}"

    def span(self) -> tuple[float, float]:
        """Smallest and largest sampled value."""
        return (min(float(v.min()) for v in self.values),
                max(float(v.max()) for v in self.values))


def sample_target(path: str) -> TargetSample:
    """Read a sample of ``path``'s chunks (per channel when it has a ``c`` axis)."""
    image = open_image(path)
    array = image.array(0)
    axes = image.meta.axes
    caxis = axes.index("c") if "c" in axes else None
    values, _ = sample_chunks(array, channel_axis=caxis)
    recorded = (image.attrs.get("volumetric") or {}).get("kind")
    return TargetSample(str(path), str(array.dtype), tuple(values), recorded)


@dataclass(frozen=True)
class TargetTransform:
    """Turns a target patch ``(C, *spatial)`` into what the network learns.

    Parameters
    ----------
    kind : {"mask", "labels", "distance", "image"}
    foreground : str
        Rule binarising masks and labels, e.g. ``">0"``.
    normalize : {"none", "percentile", "zscore"}
        Normalisation of distance and image targets.
    stats : sequence of dict
        Per channel ``low``/``high``/``mean``/``std`` of the targets (for ``normalize``).
    dtype : str
        The target's stored type, written back by ``vol predict``.
    """

    kind: str
    foreground: str = ">0"
    normalize: str = "none"
    stats: tuple[dict[str, float], ...] = ()
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_choice(self.kind, KINDS, "--target")
        check_choice(self.normalize, METHODS, "--target-normalize")
        if self.binary and self.normalize != "none":
            raise InputError(f"--target {self.kind} is binarised; --target-normalize "
                             f"{self.normalize} applies to image and distance targets")

    @property
    def binary(self) -> bool:
        return self.kind in BINARY_KINDS

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """The learned target of a patch: uint8 foreground, or float32 values."""
        if self.binary:
            rule = parse_foreground(self.foreground)
            return np.stack([foreground_of(channel[None], rule) for channel in block]
                            ).astype(np.uint8)
        if self.normalize == "none":
            return block
        return np.stack([normalize(channel, stats, self.normalize)
                         for channel, stats in zip(block, self.stats)])

    def learned_span(self, sample: TargetSample) -> tuple[float, float]:
        """Smallest and largest value the network learns from ``sample``."""
        if self.binary:
            return 0.0, 1.0
        spans = []
        for c, values in enumerate(sample.values):
            offset, scale = affine(self.stats[c] if self.stats else {}, self.normalize)
            spans += [(float(values.min()) - offset) / scale, (float(values.max()) - offset) / scale]
        return min(spans), max(spans)

    def describe(self) -> str:
        """What the network learns, e.g. ``binary foreground (>0)``."""
        if self.binary:
            return f"binary foreground ({self.foreground})"
        if self.normalize == "none":
            return "values as they are"
        keys = ("low", "high") if self.normalize == "percentile" else ("mean", "std")
        shown = "; ".join(", ".join(f"{k} {s[k]:.4g}" for k in keys) for s in self.stats)
        return f"{self.normalize}-normalised ({shown})"

    def metadata(self) -> dict[str, Any]:
        """What the model file stores about its target (``vol predict`` inverts it)."""
        return {"kind": self.kind, "normalize": self.normalize,
                "stats": [dict(s) for s in self.stats], "dtype": self.dtype}


def pooled_stats(samples: Sequence[TargetSample]) -> tuple[dict[str, float], ...]:
    """Per-channel percentiles (``PERCENTILES``), mean and standard deviation of all samples."""
    channels = len(samples[0].values)
    out = []
    for c in range(channels):
        values = np.concatenate([s.values[c] for s in samples]).astype(np.float64, copy=False)
        low, high = np.percentile(values, PERCENTILES)
        out.append({"low": float(low), "high": float(high), "mean": float(values.mean()),
                    "std": float(values.std())})
    return tuple(out)


def target_kind(samples: Sequence[TargetSample], kind: str = "auto") -> str:
    """The kind of the training targets: ``kind``, or the one detected (``auto``).

    Raises
    ------
    InputError
        Targets of different kinds, or ``mask``/``labels`` for a float target.
    """
    check_choice(kind, ("auto", *KINDS), "--target")
    if kind == "auto":
        found = {s.path: s.detect() for s in samples}
        kinds = set(found.values())
        if len(kinds - set(BINARY_KINDS)) + bool(kinds & set(BINARY_KINDS)) > 1:
            shown = ", ".join(f"{path} {k}" for path, k in found.items())
            raise InputError(f"the targets are of different kinds ({shown}); give --target")
        return "labels" if "labels" in kinds else kinds.pop()
    if kind in BINARY_KINDS:
        for sample in samples:
            if not sample.integer:
                raise InputError(f"--target {kind} needs an integer target, but {sample.path} "
                                 f"is {sample.dtype}; use --target image or distance")
    return kind


def plan_target(samples: Sequence[TargetSample], kind: str, normalize: str | None = None,
                foreground: str = ">0") -> TargetTransform:
    """The transform of every target of ``kind`` (see :func:`target_kind`).

    Parameters
    ----------
    samples : sequence of TargetSample
        Every training target.
    kind : {"mask", "labels", "distance", "image"}
    normalize : {"none", "percentile", "zscore"}, optional
        Default: ``percentile`` for images, none for the other kinds.
    foreground : str
        Rule binarising masks and labels.

    Raises
    ------
    InputError
        A normalisation asked for a binarised kind.
    """
    if normalize is None:
        normalize = "percentile" if kind == "image" else "none"
    stats = pooled_stats(samples) if kind not in BINARY_KINDS and normalize != "none" else ()
    return TargetTransform(kind, foreground, normalize, stats, samples[0].dtype)
