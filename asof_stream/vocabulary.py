"""Messages in the caller's words: library errors name options as command-line flags
(``--timestamp-column``); the Python API re-words them as keyword arguments
(``timestamp_column=``) and the CLI keeps (or restores) the flags."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: command-line flag -> the keyword argument of the Python API that means the same
FLAGS = {
    "--timestamp-column": "timestamp_column=",
    "--full-feature-names": "full_feature_names=True",
    "--as-known-at": "as_known_at=True",
    "--strict": "strict=True",
    "--jobs": "jobs=",
}
# Older messages name both: "--full-feature-names (full_feature_names=True)".
_BOTH = re.compile(r"(--[a-z][a-z-]*) \(([a-z_]+=[A-Za-z0-9]*)\)")


def _flag(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(name) + r"(?![a-z-])")


def in_api_words(text: str) -> str:
    """``text`` with every known flag replaced by its keyword argument."""
    text = _BOTH.sub(lambda m: m.group(2) if m.group(1) in FLAGS else m.group(0), text)
    for flag, kw in FLAGS.items():
        text = _flag(flag).sub(kw, text)
    return text


def in_cli_words(text: str) -> str:
    """``text`` with every known keyword argument replaced by its flag."""
    text = _BOTH.sub(lambda m: m.group(1) if m.group(1) in FLAGS else m.group(0), text)
    for flag, kw in FLAGS.items():
        start = r"(?<![A-Za-z0-9_])" + re.escape(kw)
        if kw.endswith("="):  # "jobs=4" -> "--jobs 4"; "jobs=" -> "--jobs"
            text = re.sub(start + r"(?=[^\s),;.])", flag + " ", text)
            text = re.sub(start, flag, text)
        else:
            text = re.sub(start + r"(?![A-Za-z0-9_])", flag, text)
    return text


def speaks_api(fn: F) -> F:
    """A FeatureStore method whose ValueErrors (of any subclass) name keyword arguments."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (in_api_words(exc.args[0]), *exc.args[1:])
            raise

    return wrapper  # type: ignore[return-value]
