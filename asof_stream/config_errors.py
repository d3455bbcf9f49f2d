"""Config validation errors in the user's words: the TOML key path (features by name),
the bad value, what would be valid, a "did you mean" for misspelt keys, and the
environment variable when an ``ASOF_...`` override, not the file, holds the bad value."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .redaction import redact_url

#: pydantic's tags for the members of the sources union; not TOML keys
_UNION_TAGS = frozenset({"kafka", "file", "http"})

#: (dotted TOML path, as lower-case parts) -> (variable name, its raw value)
EnvPaths = dict[tuple[str, ...], tuple[str, str]]


def _name_loc(loc: tuple[int | str, ...], data: Any) -> list[str]:
    """The error location as TOML keys: a list index into a TOML table (``features``
    given as ``{ name = "type" }``) becomes the entry's name; ``.dtype`` is dropped
    when the feature was written as a bare type string."""
    parts: list[str] = []
    node: Any = data
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in _UNION_TAGS and not (
                isinstance(node, dict) and part in node):
            continue
        if isinstance(node, dict) and isinstance(part, int):
            keys = list(node)
            if 0 <= part < len(keys):
                parts.append(str(keys[part]))
                node = node[keys[part]]
                if isinstance(node, str) and loc[i + 1:] in {("dtype",), ("type",)}:
                    return parts
                continue
        parts.append(str(part))
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return parts


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(_unwrap(a) for a in typing.get_args(tp))
    return ()


def _keys_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the table at ``loc`` (the model fields there), or []."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        members = _union_members(tp)
        if members:
            tagged = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)
                      and "kind" in m.model_fields and part in typing.get_args(
                          m.model_fields["kind"].annotation)]
            if tagged:
                tp = tagged[0]
                continue
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            if not models:
                return []
            tp = models[0]
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
            continue
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is dict and args:
            tp = args[-1]
        elif origin in (tuple, list) and args:
            tp = args[0]
        else:
            return []
    tp = _unwrap(tp)
    members = _union_members(tp)
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if models:
        tp = models[0]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _message(err: ErrorDetails, root: type[BaseModel]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        allowed = _keys_at(root, loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if guess:
            return f"unknown key; did you mean {guess[0]!r}?"
        return "unknown key" + (f" (valid keys: {', '.join(allowed)})" if allowed else "")
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        what = "valid types" if loc and loc[-1] in ("dtype", "type") or (
            len(loc) > 1 and loc[-2] == "join_keys") else "expected one of"
        return f"got {_show(err['input'])}; {what}: {expected}"
    if kind not in ("value_error", "assertion_error") and "input" in err \
            and not isinstance(err["input"], dict | list):
        return f"{msg}, got {_show(err['input'])}"
    return msg


def _show(value: Any) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def format_validation_error(exc: ValidationError, root: type[BaseModel], data: Any,
                            path: Path, env: EnvPaths) -> str:
    """One line naming every problem; each is blamed on the file or on the variable."""
    from_file: list[str] = []
    from_env: list[str] = []
    for err in exc.errors():
        where = ".".join(_name_loc(err["loc"], data))
        msg = _message(err, root)
        var = _env_for(where or msg, env)
        text = f"{where}: {msg}" if where else msg
        if var is not None:
            name, value = var
            from_env.append(f"{name}={redact_url(value)}: {msg}")
        else:
            from_file.append(text)
    out = []
    if from_env:
        out.append("; ".join(from_env))
    if from_file:
        out.append(f"{path}: " + "; ".join(from_file))
    return "; ".join(out)


def _env_for(where: str, env: EnvPaths) -> tuple[str, str] | None:
    """The override that set the value at (or that a message names) ``where``."""
    low = where.lower()
    for parts, var in env.items():
        dotted = ".".join(parts)
        if low == dotted or low.startswith((dotted + ".", dotted + ":", dotted + " ")):
            return var
    return None
