"""No output over an input, no file replaced without --overwrite, one run per output at a time."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from image_files import write_image
from predict_models import save_torchscript, tiny

from volumetric.engine import RunOptions
from volumetric.engine import JOURNAL_DIR, acquire_lease, release_lease
from volumetric.errors import DestinationError
from volumetric.io.swc import Skeleton, write_swc
from volumetric.ops.distance import distance


def _tree_digest(path: Path) -> str:
    """A digest of every file's relative name and bytes under ``path`` (or of the file)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path.parent)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def inputs(tmp_path):
    """A small binary mask image, an SWC, a model and some existing files."""
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[2:6, 4:12, 4:12] = 1
    write_image(tmp_path / "raw.zarr", mask, chunks=(4, 8, 8))
    write_swc(tmp_path / "n.swc", Skeleton(
        ids=np.array([1, 2]), types=np.array([3, 3]), xyz=np.array([[4.0, 4, 2], [10, 10, 5]]),
        radius=np.array([1.0, 1.0]), parents=np.array([-1, 1])))
    write_image(tmp_path / "pred.zarr", mask[None].astype(np.float32), axes="czyx")
    save_torchscript(tiny(out_channels=1), tmp_path / "tiny.pt")
    for name in ("old.json", "old.png", "old.zarr"):
        (tmp_path / name).write_text("keep me")
    return tmp_path


def _commands(d: Path, out: str) -> dict[str, list[str]]:
    """Every command that writes a file or store, with its output at ``out``."""
    raw = str(d / "raw.zarr")
    return {
        "convert": ["convert", raw, out],
        "discover": ["discover", raw, out, "--all"],
        "distance": ["distance", raw, out],
        "render": ["render", str(d / "n.swc"), out, "--like", raw],
        "project": ["project", raw, str(d / "pj.zarr"), "--png", out],
        "predict": ["predict", raw, out, "--model", str(d / "tiny.pt"), "--window", "4,8,8"],
        "overlay": ["overlay", raw, str(d / "pred.zarr"), out],
        "patches": ["patches", raw, raw, out, "--patch", "4,8,8", "--n", "2"],
        "train": ["train", raw, raw, "--out", out, "--steps", "1"],
    }


OUTSIDE_NAMES = {"discover": "old.json", "project": "old.png", "patches": "old.png"}


@pytest.mark.parametrize("command", list(_commands(Path("."), "x")))
@pytest.mark.parametrize("inside", ["raw.zarr/zarr.json", "raw.zarr/0/zarr.json",
                                    "raw.zarr/new.png", "raw.zarr"])
def test_no_output_inside_or_over_an_input(vol, inputs, command, inside):
    """Even with --overwrite, an output on or inside an input is refused, input bytes unchanged."""
    raw = inputs / "raw.zarr"
    before = _tree_digest(raw)
    overwrite = [] if command == "train" else ["--overwrite"]  # train has --resume instead
    result = vol(*_commands(inputs, str(inputs / inside))[command], *overwrite)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "input" in result.output, result.output
    assert _tree_digest(raw) == before
    assert not (inputs / "pj.zarr").exists()


@pytest.mark.parametrize("command", list(_commands(Path("."), "x")))
def test_an_existing_file_needs_overwrite(vol, inputs, command):
    existing = inputs / OUTSIDE_NAMES.get(command, "old.zarr")
    result = vol(*_commands(inputs, str(existing))[command])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    assert existing.read_text() == "keep me"
    assert not (inputs / "pj.zarr").exists()


def test_png_needs_its_extension_before_anything_is_written(vol, inputs):
    result = vol("project", inputs / "raw.zarr", inputs / "pj.zarr", "--png", inputs / "preview")
    assert result.exit_code == 2 and "must end with .png" in result.output
    assert not (inputs / "pj.zarr").exists() and not (inputs / "preview").exists()


def test_png_and_gallery_replace_an_existing_file_with_overwrite(vol, inputs):
    raw = inputs / "raw.zarr"
    result = vol("project", raw, inputs / "pj.zarr", "--png", inputs / "old.png", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (inputs / "old.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(inputs.glob(".*partial*"))


# --- one run at a time -------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from volumetric.engine import acquire_lease
    acquire_lease(sys.argv[1], what=sys.argv[2])
    print("held", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def holder():
    """Start a process that holds the lease of an output; yields a starter returning the process."""
    started = []

    def start(store: Path) -> subprocess.Popen:
        command = [sys.executable, "-c", HOLDER, str(store / JOURNAL_DIR), str(store)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_second_run_is_refused_naming_the_first(vol, inputs, holder):
    raw, out = inputs / "raw.zarr", inputs / "d.zarr"
    assert vol("distance", raw, out).exit_code == 0
    first = holder(out)
    before = _tree_digest(out)
    result = vol("distance", raw, out, "--overwrite", "--clip", "3")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert f"host {socket.gethostname()}, pid {first.pid}" in result.output
    assert _tree_digest(out) == before  # not a byte changed


def test_lease_of_a_killed_run_is_taken_over(vol, inputs, holder):
    raw, out = inputs / "raw.zarr", inputs / "d.zarr"
    first = holder(out)
    first.send_signal(signal.SIGKILL)
    first.wait()
    result = vol("distance", raw, out)
    assert result.exit_code == 0, result.output
    stored = zarr.open_array(str(out / "0"), mode="r")[:]
    assert stored.shape == (8, 16, 16) and stored.max() > 0
    assert not (out / JOURNAL_DIR / "lease").exists()  # given up once complete


def test_a_run_that_raised_does_not_block_the_next_call_of_this_process(client, inputs):
    raw, out = inputs / "raw.zarr", inputs / "d.zarr"
    lease = acquire_lease(out / JOURNAL_DIR, what=str(out))  # left behind by a failed call
    distance(str(raw), str(out), run=RunOptions(client=client, progress=False))
    assert not lease.held
    assert zarr.open_array(str(out / "0"), mode="r")[:].max() > 0


def test_two_processes_contend_for_one_lease(tmp_path, holder):
    holder(tmp_path / "o.zarr")
    with pytest.raises(DestinationError, match=r"is being written by another run \(host "):
        acquire_lease(tmp_path / "o.zarr" / JOURNAL_DIR, what="o.zarr")


def test_overwrite_keeps_the_lease_it_holds(client, inputs):
    """--overwrite empties the store but keeps its own lease, so no second run slips in."""
    raw, out = inputs / "raw.zarr", inputs / "d.zarr"
    distance(str(raw), str(out), run=RunOptions(client=client, progress=False))
    holders = []

    def create_hook() -> None:
        holders.append(os.path.exists(out / JOURNAL_DIR / "lease"))

    from volumetric.ops.output import open_output

    journal, _ = open_output(out, {"x": 1}, create_hook, overwrite=True)
    try:
        assert holders == [True]
        assert not (out / "0").exists()
        second = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from volumetric.engine import acquire_lease
            acquire_lease({str(out / JOURNAL_DIR)!r}, what="d.zarr")
        """)], capture_output=True, text=True)
        assert second.returncode != 0 and "is being written by another run" in second.stderr
    finally:
        release_lease(journal.root)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_store_left_without_metadata_by_a_dead_run_is_written_again(client, inputs, overwrite):
    """A run killed between emptying its store and creating the arrays leaves only its journal."""
    raw, out = inputs / "raw.zarr", inputs / "d.zarr"
    distance(str(raw), str(out), run=RunOptions(client=client, progress=False))
    expected = zarr.open_array(str(out / "0"), mode="r")[:]
    for entry in out.iterdir():
        if entry.name not in (JOURNAL_DIR, "0"):
            entry.unlink() if entry.is_file() else None
    (out / "0" / "zarr.json").unlink()
    (out / JOURNAL_DIR).mkdir()
    (out / JOURNAL_DIR / "lease").write_text("{}")  # the dead run's, no longer locked
    distance(str(raw), str(out), run=RunOptions(client=client, progress=False, overwrite=overwrite))
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[:], expected)


def test_two_vol_processes_on_one_output(tmp_path):
    """A second `vol convert --overwrite` while the first runs: refused; the first ends right."""
    data = np.random.default_rng(0).integers(0, 1000, (32, 64, 64), dtype=np.uint16)
    np.save(tmp_path / "in.npy", data)
    out = tmp_path / "out.zarr"
    command = [sys.executable, "-m", "volumetric_cli.main", "convert", str(tmp_path / "in.npy"),
               str(out), "--workers", "1"]
    env = {**os.environ, "VOLUMETRIC_CLUSTER": "local"}
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / JOURNAL_DIR / "lease").exists() and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = subprocess.run([*command, "--overwrite"], capture_output=True, text=True, env=env)
    finally:
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 2, second.stderr
    assert f"another run (host {socket.gethostname()}, pid {first.pid}" in second.stderr
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[:], data)
