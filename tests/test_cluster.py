"""``--cluster``: checked before anything is written, one-line errors, quiet worker shutdown."""

from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest
from click.testing import CliRunner

from volumetric.engine.cluster import check_cluster
from volumetric.engine.scheduler import (
    CLUSTER_ENV,
    CONNECT_TIMEOUT_ENV,
    connect_timeout,
    scheduler_address,
)
from volumetric.engine.shutdown import CLUSTER_LOGGERS, QuietShutdown
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


def test_scheduler_address_accepts_addresses_and_scheduler_files(no_cluster_env, tmp_path):
    assert scheduler_address(None) == "local"
    assert scheduler_address("host:8786") == "host:8786"
    assert scheduler_address("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    sched = tmp_path / "sched.json"
    sched.write_text(json.dumps({"type": "Scheduler", "address": "tcp://10.0.0.2:8786"}))
    assert scheduler_address(str(sched)) == "tcp://10.0.0.2:8786"


@pytest.mark.parametrize("content, value, message", [
    (None, "foo", "--cluster foo: not 'local', a scheduler address or an existing scheduler"),
    (None, "http://host:8786", "--cluster http://host:8786: not 'local'"),
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
        scheduler_address(value)
    assert message.format(tmp=tmp_path) in str(info.value)


def test_cluster_from_the_environment_is_named_so(monkeypatch):
    monkeypatch.setenv(CLUSTER_ENV, "foo")
    with pytest.raises(ClusterError, match=r"^\$VOLUMETRIC_CLUSTER=foo: "):
        scheduler_address(None)


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
