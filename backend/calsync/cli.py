"""The `calsync` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import NoReturn

import click

from calsync import migrate
from calsync.config import Config, ConfigError
from calsync.db import make_engine
from calsync.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from calsync.runtime import QUEUES, redis_url_for
from calsync.services import check_database, check_redis, redis_client
from calsync.supervisor import Child, Supervisor, calsync_command, child_env


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line, no traceback wall."""
    click.echo(f"calsync: {message}", err=True)
    sys.exit(code)


def load_config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        fail(str(exc))


def require_services(config: Config, *, database: bool = True, redis: bool = True) -> str:
    """Check what the command needs before it starts; return the Redis URL in use."""
    url = redis_url_for(config)
    try:
        if database:
            engine = make_engine(config.database_url, pooled=False)
            try:
                check_database(engine)
            finally:
                engine.dispose()
        if redis:
            if config.embedded_redis and not EmbeddedRedis(config.instance_dir).is_running():
                fail(
                    "REDIS_URL is not set and the embedded Redis is not running: start "
                    "everything with `calsync up`, or set REDIS_URL to your Redis server."
                )
            client = redis_client(url)
            try:
                check_redis(client, url)
            finally:
                client.close()
    except ConfigError as exc:
        fail(str(exc))
    return url


@click.group()
def main() -> None:
    """calsync: keeps CRM meetings and calendar events in step."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@main.command()
@click.option("--port", type=int, default=None, help="Port of the web server (default 3000).")
def up(port: int | None) -> None:
    """Run web, worker and cron together (development); Ctrl-C stops them all."""
    if port is not None:
        os.environ["PORT"] = str(port)
    config = load_config()
    embedded: EmbeddedRedis | None = None
    extra_env: dict[str, str] = {}
    if config.embedded_redis:
        embedded = EmbeddedRedis(config.instance_dir)
        if not embedded.is_running():
            try:
                embedded.start()
            except EmbeddedRedisError as exc:
                fail(str(exc))
        else:
            embedded = None  # someone else's; leave it running when we stop
        extra_env["REDIS_URL"] = EmbeddedRedis(config.instance_dir).url
    try:
        if not config.is_production:
            migrate.upgrade(config.database_url)
        require_services(Config.from_env({**os.environ, **extra_env}))
        children = [
            Child("web", calsync_command("web")),
            Child("worker", calsync_command("worker")),
            Child("cron", calsync_command("cron")),
        ]
        if not config.is_production:
            # "Sandbox Outlook" and "Sandbox CRM": emulators, never in production.
            children.append(Child("sandbox", calsync_command("sandbox")))
        supervisor = Supervisor(children, child_env(extra_env))
        code = supervisor.run(on_started=lambda stopping: _announce(config, stopping))
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(code)


def _announce(config: Config, stopping: Callable[[], bool]) -> None:
    """Print the address once /healthz says every part is up."""

    def wait() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopping():
            try:
                with urllib.request.urlopen(f"{config.base_url}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        click.echo(
                            f"\ncalsync is up: {config.base_url}/\n"
                            f"  Automatic sync page: {config.base_url}/addin/autosync.html\n"
                            f"  Health:              {config.base_url}/healthz\n"
                            "Press Ctrl-C to stop.\n"
                        )
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        if not stopping():
            click.echo("calsync: /healthz did not answer 200 within 60 s; see the logs above.")

    threading.Thread(target=wait, daemon=True).start()


@main.command()
@click.option("--fresh", is_flag=True, help="Forget the saved sandbox data and seed anew.")
def sandbox(fresh: bool) -> None:
    """Serve "Sandbox Outlook" and "Sandbox CRM", seeded emulators (development only)."""
    config = load_config()
    if config.is_production:
        fail("sandbox: the sandbox is for development only; it never runs in production.")
    from calsync.sandbox.demo import serve

    serve(config.instance_dir, echo=lambda text: click.echo(text), fresh=fresh)


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default $PORT or 3000).")
@click.option("--workers", type=int, default=None, help="Gunicorn worker processes.")
def web(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API and the add-in with gunicorn."""
    config = load_config()
    require_services(config)
    bind = f"{host or os.environ.get('HOST', '127.0.0.1')}:{port or os.environ.get('PORT', 3000)}"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "calsync.wsgi:app",
        "--config",
        "python:calsync.gunicorn_config",
        "--bind",
        bind,
        "--workers",
        str(workers or os.environ.get("WEB_CONCURRENCY", 2)),
        "--graceful-timeout",
        "20",
        "--access-logfile",
        "-",
    ]
    certfile, keyfile = os.environ.get("CALSYNC_CERTFILE"), os.environ.get("CALSYNC_KEYFILE")
    if certfile and keyfile:
        argv += ["--certfile", certfile, "--keyfile", keyfile]
    os.execv(sys.executable, argv)


@main.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(QUEUES),
    help="Queue to serve (repeatable; default: all).",
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker for sync and maintenance jobs."""
    from rq import Worker

    config = load_config()
    url = require_services(config)
    # with_scheduler: RQ's Retry intervals need a scheduler to re-enqueue delayed jobs.
    # maintenance_interval: how soon a job abandoned by a crashed worker is found and
    # retried (RQ's default is 10 minutes; a user's sync would wait that long).
    Worker(list(queues or QUEUES), connection=redis_client(url), maintenance_interval=60).work(
        burst=burst, with_scheduler=True
    )


@main.command()
def cron() -> None:
    """Run the RQ cron scheduler (automatic sync, renewals, clean-ups)."""
    from rq.cron import CronScheduler

    config = load_config()
    url = require_services(config)
    scheduler = CronScheduler(connection=redis_client(url))
    scheduler.load_config_from_file("calsync.cron")
    scheduler.start()


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    config = load_config()
    require_services(config, redis=False)
    migrate.upgrade(config.database_url, revision)
    click.echo(f"database at revision {migrate.current_revision(config.database_url)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION."""
    config = load_config()
    require_services(config, redis=False)
    migrate.downgrade(config.database_url, revision)
    click.echo(f"database at revision {migrate.current_revision(config.database_url)}")


@db.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one."""
    config = load_config()
    require_services(config, redis=False)
    click.echo(
        json.dumps(
            {
                "current": migrate.current_revision(config.database_url),
                "head": migrate.head_revision(config.database_url),
            }
        )
    )


@main.command()
@click.option("--base-url", required=True, help="The deployment's https address.")
@click.option("--output", "-o", default="manifest.xml", show_default=True, help="File to write.")
def manifest(base_url: str, output: str) -> None:
    """Write the Outlook add-in manifest for a deployment."""
    from calsync.manifest import write_manifest

    try:
        write_manifest(base_url, output)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"wrote {output} for {base_url}")


if __name__ == "__main__":
    main()
