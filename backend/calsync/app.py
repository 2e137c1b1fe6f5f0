"""The Flask application factory."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, redirect, send_from_directory

from calsync import api, health, runtime
from calsync.api import errors
from calsync.api.services import EXTENSION as SERVICES
from calsync.api.services import Services
from calsync.auth import session as auth_session
from calsync.config import Config
from calsync.security import csrf, headers, ratelimit

# The add-in is static files (no build step) kept at the top of the repository.
ADDIN_DIR = Path(os.environ.get("CALSYNC_ADDIN_DIR", Path(__file__).parents[2] / "addin"))
AUTOSYNC_PAGE = "/addin/autosync.html"


def create_app(config: Config | None = None, rt: runtime.Runtime | None = None) -> Flask:
    config = config or (rt.config if rt else Config.from_env())
    rt = rt or runtime.Runtime.from_config(config)
    runtime.install(rt)

    app = Flask(__name__, instance_path=str(config.instance_dir), static_folder=None)
    app.config.update(
        SECRET_KEY=config.secret_key,
        # An Office add-in is framed by Outlook on another origin: the session cookie
        # must be SameSite=None (and therefore Secure) to reach us from the task pane.
        SESSION_COOKIE_SECURE=config.is_production,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="None" if config.is_production else "Lax",
        MAX_CONTENT_LENGTH=1024 * 1024,
        API_TITLE="calsync",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        # Interactive docs load Swagger UI from a CDN; nothing else needs the internet.
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
    )
    app.extensions["calsync"] = rt
    app.extensions[SERVICES] = Services(config, rt.redis)

    # Order matters: CSRF is checked before any view; the rate limits wrap the views the
    # blueprints registered, so they come after them.
    csrf.init_app(app)
    auth_session.init_app(app)
    smorest = errors.CalsyncApi(app)
    api.register(smorest, development=not config.is_production)
    app.register_blueprint(health.bp)
    _register_addin(app)
    errors.init_app(app)
    ratelimit.init_app(app, config, rt.redis_url)
    headers.init_app(app, production=config.is_production)
    return app


def _register_addin(app: Flask) -> None:
    @app.get("/addin/<path:filename>")
    def addin_file(filename: str):  # type: ignore[no-untyped-def]
        return send_from_directory(ADDIN_DIR, filename)

    @app.get("/")
    def index():  # type: ignore[no-untyped-def]
        if (ADDIN_DIR / "autosync.html").exists():
            return redirect(AUTOSYNC_PAGE)
        return redirect("/healthz")
