"""Pure pieces of previews and exports: colour frames and their contrast, padding, scale bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Percentiles shown black and at full colour when contrast comes from the data.
FRAME_PERCENTILES = (0.5, 99.8)
# How a scale bar names the UDUNITS length units.
UNIT_SYMBOLS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm",
                "centimeter": "cm", "meter": "m", "angstrom": "Å", "picometer": "pm"}


def rescale(block: np.ndarray, low: np.ndarray | float, high: np.ndarray | float,
            dtype: np.dtype | str) -> np.ndarray:
    """Map ``low..high`` linearly onto the full range of the integer ``dtype``, clipping.

    Parameters
    ----------
    block : ndarray
        Any numeric data.
    low, high : float or ndarray
        Values mapped to 0 and to the maximum of ``dtype`` (broadcast against
        ``block``, e.g. one per channel); ``high <= low`` is treated as ``low + 1``.
    dtype : {"uint8", "uint16"}

    Returns
    -------
    ndarray of ``dtype``

    Examples
    --------
    >>> rescale(np.array([0, 50, 100, 200]), 0, 100, "uint8")
    array([  0, 127, 255, 255], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    top = float(np.iinfo(dtype).max)
    low = np.asarray(low, dtype=np.float64)
    span = np.asarray(high, dtype=np.float64) - low
    span = np.where(span > 0, span, 1.0)
    scaled = (block.astype(np.float64) - low) * (top / span)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return (np.clip(scaled, 0.0, top) + 0.5).astype(dtype)


def colour_frame(planes: np.ndarray, colours: Sequence[str], lows: Sequence[float],
                 highs: Sequence[float]) -> np.ndarray:
    """Blend channels into RGB with a fixed contrast per channel (the same for every frame).

    Parameters
    ----------
    planes : ndarray, shape (C, H, W)
    colours : sequence of str
        Hex colours, cycled; a single channel is grey.
    lows, highs : sequence of float
        Per channel, the values shown black and at full colour.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    rgb = np.zeros((*planes.shape[1:], 3))
    for i, plane in enumerate(planes):
        span = highs[i] - lows[i] if highs[i] > lows[i] else 1.0
        scaled = np.nan_to_num(np.clip((plane.astype(np.float64) - lows[i]) / span, 0.0, 1.0))
        hexa = "FFFFFF" if len(planes) == 1 else colours[i % len(colours)]
        colour = np.array([int(hexa[j:j + 2], 16) / 255.0 for j in (0, 2, 4)])
        rgb += scaled[..., None] * colour
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def composite_rgb(
    planes: np.ndarray, colours: Sequence[str], *, percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Blend channels into one RGB image, each in its colour with percentile contrast.

    Parameters
    ----------
    planes : ndarray, shape (C, H, W)
        One 2D image per channel.
    colours : sequence of str
        Hex colours (``"00FF00"``), cycled when there are more channels.
        A single channel is shown in grey.
    percentiles : (float, float)
        Low and high percentiles of each channel (of its finite values)
        mapped to black and full colour; non-finite values are black.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    planes = np.asarray(planes, dtype=np.float64)
    lows, highs = [], []
    shown = np.empty_like(planes)
    for i, plane in enumerate(planes):
        finite = np.isfinite(plane)
        lo, hi = np.percentile(plane[finite], percentiles) if finite.any() else (0.0, 1.0)
        lows.append(lo)
        highs.append(hi)
        shown[i] = np.where(finite, plane, lo)
    return colour_frame(shown, colours, lows, highs)


def frame_contrast(frames: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per channel black and white levels for a movie: percentiles of some ``(C, Y, X)`` frames.

    The same levels then serve every frame, so brightness does not flicker.
    """
    stack = np.stack(frames, axis=1).reshape(len(frames[0]), -1).astype(np.float64)
    lows, highs = np.percentile(stack, FRAME_PERCENTILES, axis=1)
    return list(lows), list(highs)


def spread(count: int, most: int = 5) -> list[int]:
    """At most ``most`` indices spread evenly over ``range(count)``, first and last included."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(count, most))})


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """Pad an ``(H, W, 3)`` frame with black to even height and width (H.264 needs them)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))


def round_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target`` (> 0).

    Examples
    --------
    >>> round_length(37.0), round_length(0.7), round_length(5.0)
    (20.0, 0.5, 5.0)
    """
    power = 10.0 ** math.floor(math.log10(target))
    for step in (5.0, 2.0, 1.0):
        if step * power <= target * (1 + 1e-9):
            return step * power
    return power


def _label(length: float, unit: str | None) -> str:
    number = f"{length:g}"
    return f"{number} {UNIT_SYMBOLS.get(unit or '', unit or 'px')}"


def scale_bar(width: int, pixel_size: float, unit: str | None) -> tuple[int, str]:
    """A round scale bar about a fifth of ``width``: its length in pixels and its label.

    Examples
    --------
    >>> scale_bar(500, 0.2, "micrometer")
    (100, '20 µm')
    """
    length = round_length(width * pixel_size / 5.0)
    return max(1, int(round(length / pixel_size))), _label(length, unit)


def _label_font(size: int) -> Any:
    """DejaVu Sans (shipped with matplotlib, it has the µ of "µm"), else Pillow's default."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        path = font_manager.findfont("DejaVu Sans", fallback_to_default=False)
        return ImageFont.truetype(path, size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default(size=size)


def draw_scale_bar(rgb: np.ndarray, length: int, label: str) -> np.ndarray:
    """Draw a white bar of ``length`` pixels with its label at the bottom right of ``rgb``.

    The bar (``max(2, H // 60)`` rows thick) ends ``W // 20`` pixels from the
    right edge and ``H // 20`` from the bottom; the label is written above it.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3): a copy of ``rgb`` with the bar.
    """
    from PIL import Image, ImageDraw

    h, w = rgb.shape[:2]
    thick = max(2, h // 60)
    right, bottom = w - max(1, w // 20), h - max(1, h // 20)
    left, top = max(0, right - length), max(0, bottom - thick)
    out = rgb.copy()
    out[top:bottom, left:right] = 255
    size = max(8, min(h, w) // 20)
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = _label_font(size)
    text_w = draw.textlength(label, font=font)
    x = max(0.0, (left + right - text_w) / 2)
    draw.text((x, top - 2), label, fill=(255, 255, 255), font=font, anchor="ls",
              stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(image)
