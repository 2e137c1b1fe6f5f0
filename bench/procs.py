"""Real calsync processes (web under gunicorn, RQ workers) for the scenarios that need them.

Each process is started by the benchmark and stopped by it, by its own pid (SIGTERM to its
process group, which it leads, then SIGKILL); output goes to a log file under the run's
temporary directory so a failure can be read afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests


class Proc:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.args = args
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "calsync.cli", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: gunicorn's workers stop with it
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user + system) so far of `pid` and each of its descendants (Linux /proc).

    A server's CPU per request does not depend on what else shares the machine, unlike its
    latency, so a scenario reports both.
    """
    tick = os.sysconf("SC_CLK_TCK")
    pids, seen = [pid], {}
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/stat") as fh:
                # After the command name (which may hold spaces): utime and stime, fields 14, 15.
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{current}/task/{current}/children") as fh:
                pids += [int(child) for child in fh.read().split()]
        except OSError:  # it exited meanwhile
            continue
        seen[current] = (int(fields[11]) + int(fields[12])) / tick
    return seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    """Until `url` answers at all (any status): the server is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{' '.join(proc.args)} exited: {proc.tail()}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s: {proc.tail()}")


def flush_redis(url: str) -> None:
    """Empty the benchmark's own Redis database (only that one)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
