"""Test databases: a fresh PostgreSQL schema per test, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text


def postgres_schema_url(base_url: str) -> Iterator[str]:
    """A URL whose connections land in a fresh schema; the schema is dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"TEST_DATABASE_URL={base_url} is set but unusable: {exc}")
    separator = "&" if "?" in base_url else "?"
    url = base_url.replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
