"""`calsync up`: web, worker and cron as one supervised process group.

Development runs everything from one terminal; Ctrl-C stops every child (and the
embedded Redis) and leaves nothing behind. A child that crashes is restarted, unless
it keeps crashing, which stops the group with the child's name in the message.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1
RESTARTS_ALLOWED = 5
RESTART_WINDOW_SECONDS = 60.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # If `calsync up` itself is SIGKILLed it cannot clean up: the kernel does it for us.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(self.argv, env=env, preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, children: list[Child], env: dict[str, str]) -> None:
        self.children = children
        self.env = env
        self._stopping = False

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def run(self, on_started=None) -> int:  # type: ignore[no-untyped-def]
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        for child in self.children:
            child.start(self.env)
        if on_started is not None:
            on_started(lambda: self._stopping)
        exit_code = 0
        try:
            while not self._stopping:
                time.sleep(0.2)
                for child in self.children:
                    if self._stopping or child.alive():
                        continue
                    code = child.process.returncode if child.process else None
                    if not self._may_restart(child):
                        print(
                            f"calsync: {child.name} keeps exiting (last exit code {code}); "
                            "stopping everything.",
                            file=sys.stderr,
                        )
                        self._stopping = True
                        exit_code = 1
                        break
                    print(f"calsync: {child.name} exited ({code}); restarting it.", file=sys.stderr)
                    child.start(self.env)
        finally:
            self.stop_all()
        return exit_code

    def _may_restart(self, child: Child) -> bool:
        now = time.monotonic()
        while child.restarts and now - child.restarts[0] > RESTART_WINDOW_SECONDS:
            child.restarts.popleft()
        if len(child.restarts) >= RESTARTS_ALLOWED:
            return False
        child.restarts.append(now)
        return True

    def stop_all(self, timeout: float = 20.0) -> None:
        for child in self.children:
            if child.alive():
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def calsync_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "calsync.cli", *args]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
