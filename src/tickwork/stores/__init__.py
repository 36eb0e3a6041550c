"""Task stores: where tasks, their state and the run history live.

``open_store(url)`` builds one from a URL, the spelling used by the service config:

* ``memory://``
* ``json:///abs/path/tasks.json``
* ``sqlite:///abs/path/tickwork.db``
* ``postgresql://user@host/db`` (also ``postgres://``): needs ``tickwork[postgres]``

The file stores accept retention settings as query parameters:
``sqlite:///var/lib/tw.db?keep_runs_per_task=500&keep_days=30`` (``none`` disables one).
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from .._errors import StoreError
from .base import TaskDict, TaskStore
from .json import JsonTaskStore
from .memory import MemoryTaskStore
from .sqlite import SqliteTaskStore

__all__ = [
    "JsonTaskStore",
    "MemoryTaskStore",
    "SqliteTaskStore",
    "StoreURLError",
    "TaskDict",
    "TaskStore",
    "open_store",
]


class StoreURLError(StoreError, ValueError):
    """A store URL that cannot be used; the message names the URL and the problem."""


def _redact(url: str) -> str:
    """The URL without its password, for error messages (DSNs carry secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _retention(url: str, query: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("keep_runs_per_task", "keep_days"):
            raise StoreURLError(f"store URL {url!r}: unknown parameter {key!r} "
                                "(known: keep_runs_per_task, keep_days)")
        if value.lower() in ("", "none"):
            out[key] = None
            continue
        try:
            out[key] = int(value) if key == "keep_runs_per_task" else float(value)
        except ValueError:
            raise StoreURLError(f"store URL {url!r}: {key}: not a number: {value!r}") from None
    return out


def open_store(url: str) -> TaskStore:
    """A store for ``url`` (see the module docstring). Bad URLs raise ``StoreURLError``
    (a ``StoreError`` and a ``ValueError``) naming the URL."""
    shown = _redact(url)
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise StoreURLError(f"store URL {shown!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path.strip("/") or parts.query:
            raise StoreURLError(f"store URL {shown!r}: use plain 'memory://'")
        return MemoryTaskStore()
    if scheme in ("json", "sqlite"):
        if parts.netloc not in ("", "localhost"):
            raise StoreURLError(
                f"store URL {shown!r}: the path must be absolute, with three slashes: "
                f"'{scheme}:///abs/path' (got host {parts.netloc!r})"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or path.endswith("/"):
            raise StoreURLError(
                f"store URL {shown!r}: expected an absolute file path: '{scheme}:///abs/path'"
            )
        try:
            options = _retention(shown, parts.query)
            if scheme == "json":
                return JsonTaskStore(path, **options)
            return SqliteTaskStore(path, **options)
        except StoreURLError:
            raise
        except ValueError as e:
            raise StoreURLError(f"store URL {shown!r}: {e}") from None
    if scheme in ("postgresql", "postgres"):
        try:
            module = importlib.import_module("tickwork.stores.postgres")
        except ModuleNotFoundError as e:
            if e.name not in ("tickwork.stores.postgres", "psycopg"):
                raise
            why = "install tickwork[postgres]" if e.name == "psycopg" else "not in this version yet"
            raise StoreError(
                f"store URL {shown!r}: the PostgreSQL store is not available ({why})"
            ) from None
        store: TaskStore = module.PostgresTaskStore(url)
        return store
    raise StoreURLError(
        f"store URL {shown!r}: unknown scheme {parts.scheme!r} "
        "(use memory://, json:///path, sqlite:///path or postgresql://...)"
    )
