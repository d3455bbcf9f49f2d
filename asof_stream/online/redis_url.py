"""Parsing and checking a Redis online store URL (``redis://h:p/db?prefix=NAME``).

Kept apart from :mod:`.redis` so the config can check a URL without importing redis-py.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..redaction import redact_url

DEFAULT_PREFIX = "asof"
MAX_PREFIX = 100
#: What a ``prefix`` may hold: no glob characters (``* ? [ ] \``), no braces (the key
#: layout wraps the prefix in ``{...}``), no spaces.
PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")  # 100: MAX_PREFIX
ALLOWED = f"1 to {MAX_PREFIX} letters, digits and _ . - :"


def split_url(url: str) -> tuple[str, str]:
    """``redis://h:p/db?prefix=x&...`` -> (the URL without ``prefix``, the checked prefix).

    Raises ValueError naming the ``prefix`` URL parameter, the bad value and what is
    allowed (the URL in the message is redacted).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    rest = [(k, v) for k, v in query if k != "prefix"]
    if len(prefixes) > 1:
        raise ValueError(f"redis URL {redact_url(url)}: the URL parameter prefix is given"
                         f" {len(prefixes)} times; give it once")
    prefix = prefixes[0] if prefixes else DEFAULT_PREFIX
    if not PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"redis URL {redact_url(url)}: URL parameter prefix={prefix!r} is not"
                         f" allowed; use {ALLOWED} (no glob characters * ? [ ] \\, no braces,"
                         " no spaces)")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``SCAN MATCH`` pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
