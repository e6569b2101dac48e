"""Shared checks of the source tests: convert block-wise, compare, validate the OME-Zarr."""

from __future__ import annotations

import json
import os
from typing import Any
from unittest import mock

import numpy as np
import zarr

from volumetric.engine import RunOptions
from volumetric.ops import convert as convert_module
from volumetric.ops.info import image_info


def convert_and_check(src: Any, dst: Any, expected: np.ndarray, client: Any, *,
                      chunks: tuple[int, ...], **options: Any) -> dict[str, Any]:
    """Convert ``src`` block by block and compare ``dst/0`` with ``expected``.

    Returns the output's :func:`image_info`, after checking that the image is
    complete and validates as OME-Zarr.
    """
    from ome_zarr_models import open_ome_zarr

    # One chunk per block task, so that every task reads a small box of the source.
    with mock.patch.object(convert_module, "BLOCK_LIMIT_BYTES", 1):
        report = convert_module.convert(
            str(src), str(dst), chunks=chunks,
            run=RunOptions(block_bytes=1, client=client, progress=False), **options)
    assert report.blocks > 1, "the test volume must span several blocks"
    data = zarr.open_array(os.path.join(str(dst), "0"), mode="r")[:]
    assert data.dtype == expected.dtype
    np.testing.assert_array_equal(data, expected)
    info = image_info(str(dst))
    assert info["complete"] is True
    open_ome_zarr(str(dst))  # raises unless the group is valid OME-Zarr
    return info


def assert_one_line_failure(result: Any, vol: Any, dst: Any, *, mentions: str) -> None:
    """A refused input: exit status 2, one line on stderr, no output that looks complete."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert mentions in lines[0], lines[0]
    if os.path.exists(dst):
        info = vol("info", dst, "--json")
        assert info.exit_code == 0, info.output
        assert json.loads(info.stdout)["complete"] is False
