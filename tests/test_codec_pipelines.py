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
from distributed import Client

from volumetric.engine import RunOptions
from volumetric.ops.convert import convert
from volumetric.ops.distance import distance
from volumetric.ops.predict import PredictOptions, predict

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


def test_convert_distance_and_predict_store_the_same_bytes_with_both_pipelines(tmp_path):
    pytest.importorskip("torch")
    from predict_models import save_torchscript, tiny

    model = str(save_torchscript(tiny(), tmp_path / "tiny.pt"))
    data = _volume()
    np.save(tmp_path / "mask.npy", (data % 97 == 0).astype(np.uint8))
    outputs = {}
    # workers that are threads of this process: the pipeline set here is theirs
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=":0") as client:
        for name, path in PIPELINES.items():
            run = RunOptions(client=client, block_bytes=1, progress=False)
            with zarr.config.set({"codec_pipeline.path": path}):
                mask = str(tmp_path / f"m-{name}.zarr")
                convert(str(tmp_path / "mask.npy"), mask, chunks=(8, 8, 8), levels=2, run=run)
                distance(mask, str(tmp_path / f"d-{name}.zarr"), clip=4.0, signed=True,
                         levels=2, run=run)
                predict(mask, str(tmp_path / f"p-{name}.zarr"),
                        PredictOptions(model, window=(8, 8, 8), device="cpu"), run=run)
            outputs[name] = tuple(_files(tmp_path / f"{kind}-{name}.zarr") for kind in "mdp")
    assert all(outputs["default"])
    assert outputs["default"] == outputs["zarrs"]
