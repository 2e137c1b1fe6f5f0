"""Browser tests: the real app served over HTTP, driven by Debian's Chromium (Playwright).

- The app is ``create_app`` on the test runtime (fresh SQLite, test Redis) behind
  werkzeug's threaded server on a free 127.0.0.1 port; BASE_URL is that address.
- Chromium is /usr/bin/chromium (``scripts/ensure-chromium`` installs it); Playwright's
  own browser downloads are never used. Under CI=true a Chromium that cannot start fails
  the run; elsewhere its tests are skipped with the reason.
- office.js is blocked: the pages must work in a plain browser when it cannot load.
- Screenshots go to test-artifacts/screenshots/ (gitignored).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("CALSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TASKPANE_WIDTH = 320


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing: run scripts/ensure-chromium")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
            )
        except Error as exc:
            _unavailable(f"Chromium could not start: {exc}")
        yield chromium
        chromium.close()


class _Dispatcher:
    """The server is bound before the app exists (the app needs BASE_URL = its address)."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def http_server() -> Iterator[tuple[Any, _Dispatcher]]:
    dispatcher = _Dispatcher()
    server = make_server("127.0.0.1", 0, dispatcher, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, dispatcher
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def base_url(http_server: tuple[Any, _Dispatcher]) -> str:
    server, _ = http_server
    return f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def env(env: dict[str, str], base_url: str) -> dict[str, str]:
    # Radicale and the CRM emulator listen on 127.0.0.1, which the SSRF guard refuses
    # unless the operator names it.
    return {**env, "BASE_URL": base_url, "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.fixture
def live_app(rt: Any, http_server: tuple[Any, _Dispatcher]) -> Any:
    from calsync.app import create_app

    app = create_app(rt=rt)
    http_server[1].app = app
    return app


@pytest.fixture
def routes(live_app: Any) -> set[str]:
    """The API routes this server offers (to skip flows whose routes have not landed)."""
    spec = live_app.test_client().get("/api/openapi.json").get_json()
    return set(spec["paths"])


@pytest.fixture
def context(browser: Any, live_app: Any, base_url: str) -> Iterator[Any]:
    ctx = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 900})
    # No internet here, and the pages must work without office.js anyway.
    ctx.route("https://appsforoffice.microsoft.com/**", lambda route: route.abort())
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # JavaScript errors fail the test; HTTP errors the page handles (401 before sign-in,
    # refused input, office.js blocked) are logged by Chromium as "Failed to load resource".
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    yield page
    assert not errors, f"errors in the page: {errors}"


def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def dev_sign_in(page: Any, path: str, email: str, name: str | None = None) -> None:
    """Open `path` and sign in with the development sign-in form."""
    page.goto(path)
    page.get_by_label("Email").fill(email)
    if name:
        page.get_by_label("Name (optional)").fill(name)
    page.get_by_role("button", name="Sign in").click()
    page.locator("body[data-ready='true']").wait_for()
