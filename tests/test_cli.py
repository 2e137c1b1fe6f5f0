"""The `calsync` command: clear one-line refusals, and `calsync up` that cleans up after itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from processes import calsync_process, stop_process


def run_calsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calsync.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("DATABASE_URL", "nonsense", "calsync: DATABASE_URL is not a database URL"),
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/test", "calsync: DATABASE_URL: cannot"),
        ("REDIS_URL", "memcached://cache:11211", "calsync: REDIS_URL must start with redis://"),
        ("REDIS_URL", "redis://127.0.0.1:1/0", "calsync: REDIS_URL: cannot reach Redis"),
    ],
)
def test_a_bad_or_unreachable_service_stops_the_worker_with_one_line(
    env: dict[str, str], setting: str, value: str, expected: str
) -> None:
    result = run_calsync({**env, setting: value}, "worker")

    assert result.returncode == 2
    assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_production_without_secrets_refuses_to_start_and_says_which(env: dict[str, str]) -> None:
    result = run_calsync({**env, "CALSYNC_ENV": "production"}, "web")

    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr


def test_db_upgrade_reports_the_revision(env: dict[str, str]) -> None:
    result = run_calsync(env, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


def test_manifest_command_writes_a_manifest_for_the_deployment(
    env: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "manifest.xml"
    result = run_calsync(
        env, "manifest", "--base-url", "https://calsync.example.com", "-o", str(output)
    )

    assert result.returncode == 0, result.stderr
    assert "https://calsync.example.com/addin/taskpane.html" in output.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.add(child)
            pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    return state != "Z"


def test_up_serves_healthz_and_ctrl_c_leaves_no_process_behind(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    up_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": "1"}
    del up_env["REDIS_URL"]  # the embedded Redis, as `make run` uses it
    up = subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "up"],
        env=up_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        status, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
        family = descendants(up.pid)
        assert len(family) >= 4  # redis, web, worker, cron (and their own children)

        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C does
        output, _ = up.communicate(timeout=40)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()

    assert up.returncode == 0, output.decode(errors="replace")[-2000:]
    time.sleep(0.5)
    assert [pid for pid in family if alive(pid)] == []
    assert not (Path(env["CALSYNC_INSTANCE_DIR"]) / "redis.sock").exists()


def test_up_prints_the_automatic_sync_page_address(env: dict[str, str]) -> None:
    port = free_port()
    up_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": "1"}
    up = calsync_process(up_env, "up")
    try:
        deadline, seen = time.monotonic() + 60, b""
        os.set_blocking(up.stdout.fileno(), False)  # type: ignore[union-attr]
        while time.monotonic() < deadline and b"Automatic sync page" not in seen:
            seen += up.stdout.read() or b""  # type: ignore[union-attr]
            time.sleep(0.3)
    finally:
        os.set_blocking(up.stdout.fileno(), True)  # type: ignore[union-attr]
        up.send_signal(signal.SIGINT)
        output = seen.decode(errors="replace") + stop_process(up, timeout=40)
    assert f"http://localhost:{port}/addin/autosync.html" in output
