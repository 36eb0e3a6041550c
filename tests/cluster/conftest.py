"""A throwaway PostgreSQL database per test run.

Connects to the ``postgres`` maintenance database (``TICKWORK_PG_ADMIN_DSN``, default
``postgresql://postgres@127.0.0.1:5432/postgres``), creates ``tickwork_test_<random>``
and drops it at the end. No server: ``scripts/ensure-postgres.sh`` is tried first; if
that fails too every test here is skipped with a loud message, unless
``TICKWORK_REQUIRE_POSTGRES=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

ADMIN_DSN = os.environ.get("TICKWORK_PG_ADMIN_DSN",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[2]


def _try_connect() -> Any:
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        return e


def _admin_connection() -> Any:
    got = _try_connect()
    if isinstance(got, psycopg.Connection):
        return got
    script = ROOT / "scripts" / "ensure-postgres.sh"
    if script.exists():
        subprocess.run(["bash", str(script)], check=False, timeout=60)
        got = _try_connect()
        if isinstance(got, psycopg.Connection):
            return got
    msg = (f"\n{'!' * 78}\n!!! PostgreSQL NOT AVAILABLE at {ADMIN_DSN}: {got}\n"
           f"!!! the cluster tests (tests/cluster) are SKIPPED, nothing was tested.\n"
           f"!!! Set TICKWORK_REQUIRE_POSTGRES=1 to make this a failure.\n{'!' * 78}")
    if os.environ.get("TICKWORK_REQUIRE_POSTGRES") == "1":
        pytest.fail(msg, pytrace=False)
    print(msg, file=sys.stderr)
    warnings.warn(msg, stacklevel=1)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a fresh database that lives for this test session."""
    admin = _admin_connection()
    name = f"tickwork_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    parts = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    parts["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**parts)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def new_schema(pg_dsn: str) -> Callable[[], str]:
    """Fresh schema names: each is an empty 'location' for a store in the session database."""
    def make() -> str:
        return f"s_{secrets.token_hex(6)}"
    return make
