"""Running real `calsync` subcommands (worker, cron, up...) as child processes in tests."""

from __future__ import annotations

import subprocess
import sys


def calsync_process(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """Start a real `calsync` subcommand (worker, cron, up...) as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> str:
    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output.decode(errors="replace")
