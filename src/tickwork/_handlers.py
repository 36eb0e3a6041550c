"""Resolving and calling handlers: callables, "module:function" strings, sync or async."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Resolved:
    fn: Callable[..., Any]
    wants_ctx: bool
    is_async: bool


# inspect.signature dominates add_task's cost; one entry per live function, so adding
# 100,000 tasks that share a handler inspects it once.
_DESCRIBED: weakref.WeakKeyDictionary[Callable[..., Any], Resolved] = weakref.WeakKeyDictionary()


def describe(fn: Callable[..., Any]) -> Resolved:
    try:
        hit = _DESCRIBED.get(fn)
    except TypeError:  # not weak-referenceable or not hashable
        return _describe(fn)
    if hit is None:
        hit = _describe(fn)
        try:
            _DESCRIBED[fn] = hit
        except TypeError:
            pass
    return hit


def _describe(fn: Callable[..., Any]) -> Resolved:
    try:
        sig = inspect.signature(fn)
        params = [
            p for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        wants_ctx = bool(params) and (
            params[0].kind is inspect.Parameter.VAR_POSITIONAL
            or params[0].default is inspect.Parameter.empty
        )
    except (TypeError, ValueError):
        wants_ctx = False
    target = getattr(fn, "__call__", None) if not inspect.isroutine(fn) else fn  # noqa: B004
    is_async = asyncio.iscoroutinefunction(fn) or asyncio.iscoroutinefunction(target)
    return Resolved(fn, wants_ctx, is_async)


def import_handler(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` (``module.attr.attr`` after the colon works)."""
    if ":" not in ref:
        raise ImportError(f"handler {ref!r}: expected 'package.module:function'")
    mod_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImportError(f"handler {ref!r}: {obj!r} is not callable")
    return obj  # type: ignore[no-any-return]


def import_ref(fn: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` when importing it gives back ``fn`` (so a store can find it)."""
    mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", None)
    if not mod or not qual or "<" in qual or mod == "__main__":
        return None
    ref = f"{mod}:{qual}"
    try:
        return ref if import_handler(ref) is fn else None
    except Exception:
        return None
