"""The live-service fixtures start, answer, and leave no process behind."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support.processes import ManagedProcess, free_port, group_pids, managed_process
from support.services import offline_env, running_prefect_server, running_s3_server

CHILD_AND_SERVER = f"sleep 300 & exec {sys.executable} -m http.server --bind 127.0.0.1 {{port}}"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback URL)
        return response.read()


def test_managed_process_kills_its_whole_group_when_the_test_fails(tmp_path: Path) -> None:
    port = free_port()
    argv = ["bash", "-c", CHILD_AND_SERVER.format(port=port)]
    with pytest.raises(RuntimeError, match="test body failed"):
        with managed_process(
            argv,
            env=offline_env(tmp_path / "home"),
            log_path=tmp_path / "log",
            ready_url=f"http://127.0.0.1:{port}/",
        ) as process:
            pids = group_pids(process.pid)
            assert len(pids) == 2, pids  # the server and its background `sleep`
            raise RuntimeError("test body failed")
    assert group_pids(process.pid) == []


def test_managed_process_reports_an_early_exit_with_its_log(tmp_path: Path) -> None:
    argv = ["bash", "-c", "echo boom-from-child; exit 3"]
    with pytest.raises(RuntimeError, match="boom-from-child"):
        with managed_process(
            argv,
            env=offline_env(tmp_path / "home"),
            log_path=tmp_path / "log",
            ready_url="http://127.0.0.1:9/",
        ):
            pass


@pytest.mark.e2e
def test_prefect_server_answers_and_is_stopped(tmp_path: Path) -> None:
    with running_prefect_server(tmp_path) as server:
        assert json.loads(_get(f"{server.api_url}/health")) is True
        # A client given `server.env` talks to this server: the pool it creates is there.
        created = subprocess.run(
            [
                str(Path(sys.executable).parent / "prefect"),
                "work-pool",
                "create",
                "probe",
                "--type",
                "process",
            ],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        assert json.loads(_get(f"{server.api_url}/work_pools/probe"))["type"] == "process"
        assert (tmp_path / "prefect.db").exists()
        pid = server.process.pid
    assert group_pids(pid) == []


@pytest.mark.e2e
def test_s3_server_answers_and_is_stopped(tmp_path: Path) -> None:
    with running_s3_server(tmp_path) as server:
        assert b"ListAllMyBucketsResult" in _get(server.endpoint_url + "/")
        pid = server.process.pid
    assert group_pids(pid) == []


def test_a_managed_process_starts_with_sigint_at_its_default_as_under_systemd(
    tmp_path: Path,
) -> None:
    """Run from a background shell, the tests inherit SIGINT ignored; a worker started so
    would ignore `systemctl stop` (Prefect's worker turns SIGTERM into SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = ManagedProcess(["sleep", "60"], os.environ, tmp_path / "log").start()
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
        ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.MULTILINE).group(1), 16)
        assert not ignored & (1 << (signal.SIGINT - 1)), status
    finally:
        process.stop()
