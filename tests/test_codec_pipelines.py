"""zarr-python's own codec pipeline and zarrs (the ``fast`` extra) store the same bytes.

With ``ZARR_CODEC_PIPELINE__PATH=zarrs.ZarrsCodecPipeline`` every process of a
run encodes and decodes chunks in zarrs; outputs must not change (the same
bytes, except with gzip: another deflate implementation, and zarr-python's
gzip stamps the time), and each pipeline must read what the other wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from volumetric.engine import RunOptions
from volumetric.ops.common import small_job
from volumetric.io.sources import open_source
from volumetric.ops.convert import convert
from volumetric.ops.distance import distance

pytest.importorskip("zarrs", reason="zarrs (the fast extra) is not installed")

PIPELINES = {"default": "zarr.core.codec_pipeline.BatchedCodecPipeline",
             "zarrs": "zarrs.ZarrsCodecPipeline"}


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


def _volume() -> np.ndarray:
    rng = np.random.default_rng(11)
    return (rng.integers(0, 200, (24, 40, 36)) + np.arange(36)).astype(np.uint16)


@pytest.mark.parametrize("compressor", ["blosc-zstd", "zstd", "gzip", "none"])
def test_each_pipeline_reads_what_the_other_wrote(tmp_path, compressor):
    data = _volume()
    np.save(tmp_path / "v.npy", data)
    written = {}
    for name, path in PIPELINES.items():
        with zarr.config.set({"codec_pipeline.path": path}):
            report = convert(str(tmp_path / "v.npy"), str(tmp_path / f"{name}.zarr"),
                             chunks=(8, 16, 16), compressor=compressor,
                             run=RunOptions(cluster="local:1", progress=False))
        written[name] = tmp_path / f"{name}.zarr"
        assert report.image.complete
    if compressor == "gzip":  # other deflate streams, and zarr-python's gzip stamps the time
        assert _files(written["default"]).keys() == _files(written["zarrs"]).keys()
    else:
        assert _files(written["default"]) == _files(written["zarrs"])
    for reader, path in PIPELINES.items():
        for store in written.values():
            with zarr.config.set({"codec_pipeline.path": path}):
                np.testing.assert_array_equal(zarr.open_array(str(store / "0"))[...], data)


def test_convert_and_distance_store_the_same_bytes_with_both_pipelines(tmp_path):
    data = _volume()
    np.save(tmp_path / "mask.npy", (data % 97 == 0).astype(np.uint8))
    # a small job: the workers are threads of this process, so the pipeline set here is theirs
    assert small_job(open_source(str(tmp_path / "mask.npy")))
    outputs = {}
    for name, path in PIPELINES.items():
        run = RunOptions(cluster="local:2", block_bytes=1, progress=False)
        with zarr.config.set({"codec_pipeline.path": path}):
            mask = str(tmp_path / f"mask-{name}.zarr")
            convert(str(tmp_path / "mask.npy"), mask, chunks=(8, 8, 8), levels=2, run=run)
            distance(mask, str(tmp_path / f"d-{name}.zarr"), clip=4.0, signed=True, levels=2,
                     run=run)
        outputs[name] = (_files(Path(mask)), _files(tmp_path / f"d-{name}.zarr"))
    assert outputs["default"][0] and outputs["default"][1]
    assert outputs["default"] == outputs["zarrs"]
