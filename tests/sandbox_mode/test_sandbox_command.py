"""`calsync sandbox`: writes where it listens, serves the seeded emulators, and stops
cleanly (marking itself stopped) on SIGTERM, as `calsync up` stops it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from processes import calsync_process, stop_process


def test_calsync_sandbox_serves_until_stopped(env: dict[str, str]) -> None:
    path = Path(env["CALSYNC_INSTANCE_DIR"]) / "sandbox.json"
    process = calsync_process(env, "sandbox")
    try:
        deadline = time.monotonic() + 20
        info: dict = {}
        while time.monotonic() < deadline and "pid" not in info:
            assert process.poll() is None, stop_process(process)
            time.sleep(0.1)
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                info = {}
        assert info.get("pid") == process.pid
        for base in (info["consent_url"], info["crm_url"]):  # what a browser opens
            invitations = requests.get(f"{base}/_sandbox/invitations", timeout=5)
            assert invitations.status_code == 200 and invitations.json() == []
            assert requests.get(f"{base}/_sandbox/counters", timeout=5).status_code == 200
        # msal, on the server, talks to the TLS address and trusts the CA file.
        reply = requests.get(f"{info['graph_url']}/_sandbox/counters", verify=info["ca_file"],
                             timeout=5)  # fmt: skip
        assert reply.status_code == 200
    finally:
        output = stop_process(process)
    assert process.returncode == 0, output
    assert "Sandbox CRM" in output
    assert "pid" not in json.loads(path.read_text())  # stopped: the API offers it no more
