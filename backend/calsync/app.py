"""The Flask application factory."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, jsonify, redirect, send_from_directory
from flask_smorest import Api
from werkzeug.exceptions import HTTPException, NotFound

from calsync import health, runtime
from calsync.config import Config

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
    )
    app.extensions["calsync"] = rt

    Api(app)
    app.register_blueprint(health.bp)
    _register_addin(app)
    _register_errors(app)
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


def _register_errors(app: Flask) -> None:
    """One JSON error shape everywhere; never a stack trace or SQL in a response."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        message = exc.description or exc.name
        if isinstance(exc, NotFound):
            message = "There is nothing at this address."
        return jsonify(error={"status": exc.code, "message": message}), exc.code

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error")
        message = "Something went wrong on our side. Try again in a minute."
        return jsonify(error={"status": 500, "message": message}), 500
