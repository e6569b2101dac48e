"""``--cluster``: checked before anything is written, one-line errors, quiet worker shutdown."""

from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest
from click.testing import CliRunner

from volumetric.engine.cluster import check_cluster
from volumetric.engine.scheduler import CLUSTER_ENV, CONNECT_TIMEOUT_ENV, connect_timeout
from volumetric.engine.shutdown import CLUSTER_LOGGERS, QuietShutdown
from volumetric.engine.targets import resolve_target
from volumetric.errors import ClusterError


def _closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_cluster_env(monkeypatch):
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    monkeypatch.delenv(CONNECT_TIMEOUT_ENV, raising=False)


def test_cluster_names_the_embedded_cluster_addresses_and_scheduler_files(no_cluster_env,
                                                                          tmp_path):
    assert resolve_target(None).embedded and resolve_target(None).workers is None
    assert resolve_target("local").embedded
    assert (resolve_target("local:3").embedded, resolve_target("local:3").workers) == (True, 3)
    assert resolve_target("host:8786").address == "host:8786"
    assert resolve_target("tcp://10.0.0.1:8786").address == "tcp://10.0.0.1:8786"
    sched = tmp_path / "sched.json"
    sched.write_text(json.dumps({"type": "Scheduler", "address": "tcp://10.0.0.2:8786"}))
    target = resolve_target(str(sched))
    assert (target.kind, target.address) == ("scheduler", "tcp://10.0.0.2:8786")
    plain = tmp_path / "sched"  # a scheduler file without .json, named like a profile
    plain.write_text(sched.read_text())
    assert resolve_target(str(plain)).address == "tcp://10.0.0.2:8786"


@pytest.mark.parametrize("content, value, message", [
    (None, "foo", "--cluster foo: no scheduler file or profile of that name (profiles: none;"),
    (None, "http://host:8786", "--cluster http://host:8786: not 'local', 'local:N', a scheduler"),
    (None, "local:0", "--cluster local:0: give local:N with N >= 1 worker processes"),
    (None, "local:two", "--cluster local:two: give local:N"),
    (None, "missing.json", "scheduler file {tmp}/missing.json: no such file"),
    ("{}", "s.json", "scheduler file {tmp}/s.json names no scheduler address"),
    ("{", "s.json", "scheduler file {tmp}/s.json is not JSON"),
    ('{"address": "x"}', "s.json", "scheduler file {tmp}/s.json names 'x', not a scheduler"),
])
def test_bad_cluster_values_are_refused(no_cluster_env, tmp_path, content, value, message):
    if value.endswith(".json"):
        value = str(tmp_path / value)
    if content is not None:
        (tmp_path / "s.json").write_text(content)
    with pytest.raises(ClusterError) as info:
        resolve_target(value)
    assert message.format(tmp=tmp_path) in str(info.value)


def test_cluster_from_the_environment_is_named_so(monkeypatch):
    monkeypatch.setenv(CLUSTER_ENV, "foo")
    with pytest.raises(ClusterError, match=r"^\$VOLUMETRIC_CLUSTER=foo: "):
        resolve_target(None)
    monkeypatch.setenv(CLUSTER_ENV, "local:2")
    assert resolve_target(None).workers == 2
    assert resolve_target("local").workers is None  # --cluster wins over the environment


def test_connect_timeout_is_short_and_can_be_set(no_cluster_env, monkeypatch):
    assert 0 < connect_timeout() <= 10
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, "0.5")
    assert connect_timeout() == 0.5
    for bad in ("0", "-1", "inf", "soon"):
        monkeypatch.setenv(CONNECT_TIMEOUT_ENV, bad)
        with pytest.raises(ClusterError, match=CONNECT_TIMEOUT_ENV):
            connect_timeout()


def test_check_cluster_probes_the_scheduler(client, no_cluster_env):
    check_cluster(None, client.scheduler.address)
    check_cluster(None, "local")
    check_cluster(client, "tcp://127.0.0.1:1")  # a given client is used as it is
    port = _closed_port()
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ClusterError, match=f"^cannot reach the dask scheduler at {address}: "):
        check_cluster(None, address)


@pytest.mark.parametrize("value", ["foo", "missing.json", "closed-port"])
def test_cli_bad_cluster_is_one_line_and_writes_nothing(vol, tmp_path, value):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    value = {"missing.json": str(tmp_path / "missing.json"),
             "closed-port": f"tcp://127.0.0.1:{_closed_port()}"}.get(value, value)
    result = vol("convert", tmp_path / "a.npy", tmp_path / "o.zarr", "--cluster", value)
    assert result.exit_code == 2
    assert result.stderr.startswith("vol: error: ") and result.stderr.count("\n") == 1
    assert value in result.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_cli_workers_with_a_cluster_warn_that_they_are_ignored(vol, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    result = vol("convert", tmp_path / "a.npy", tmp_path / "o.zarr", "--workers", "3")
    assert result.exit_code == 0, result.output
    assert "vol: WARNING: --workers 3 is ignored" in result.stderr


def test_bare_vol_prints_the_help():
    from volumetric_cli.main import vol as vol_command

    result = CliRunner().invoke(vol_command, [])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0].startswith("Usage: vol ") and "Commands:" in lines
    assert "vol: error" not in result.output


def _dask_errors_logged() -> bool:
    return logging.getLogger("distributed.worker").isEnabledFor(logging.ERROR)


def _restore_levels(levels: list[int]) -> None:
    for name, level in zip(CLUSTER_LOGGERS, levels):
        logging.getLogger(name).setLevel(level)


def test_closing_workers_drop_their_dask_logs(client):
    levels = client.run(lambda: [logging.getLogger(n).level for n in CLUSTER_LOGGERS])
    assert all(client.run(_dask_errors_logged).values())
    client.register_plugin(QuietShutdown())
    assert all(client.run(_dask_errors_logged).values())  # not before the worker closes
    try:
        client.unregister_worker_plugin(QuietShutdown.name)  # the teardown a closing worker runs
        assert not any(client.run(_dask_errors_logged).values())
    finally:
        for worker, before in levels.items():
            client.run(_restore_levels, before, workers=[worker])


def test_version_mismatches_name_the_package_and_the_workers():
    from volumetric.engine.census import version_mismatch

    here = {"volumetric": "0.2", "numpy": "2.4.6", "torch": "2.13.0", "zarr": "3.1.6"}
    same = dict(here)
    assert version_mismatch(here, {"tcp://a:1": same, "tcp://b:1": same}) is None
    assert version_mismatch(here, {}) is None
    old = {**here, "numpy": "1.26.4", "torch": None}
    assert version_mismatch(here, {"tcp://b:1": old, "tcp://a:1": old, "tcp://c:1": same}) == (
        "torch 2.13.0 here, missing on tcp://a:1 and 1 more worker(s); "
        "numpy 2.4.6 here, 1.26.4 on tcp://a:1 and 1 more worker(s)")
    assert version_mismatch(here, {"tcp://a:1": {**here, "dask": "2020.1"}}) is None
