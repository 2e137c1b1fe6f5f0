"""WSGI entry point for gunicorn: ``gunicorn calsync.wsgi:app``."""

from calsync.app import create_app

app = create_app()
