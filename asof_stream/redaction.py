"""Credentials never reach an output: :func:`redact_url` for every URL that is printed.

Logs, errors, ``/health``, the web page, ``status`` and ``features`` all show store URLs
through it, so ``redis://user:secret@host`` appears as ``redis://user:***@host``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"
#: Query parameters that carry secrets (redis-py reads ``?password=`` as the password).
SECRET_PARAMS = frozenset({"password", "pass", "passwd", "pwd", "secret", "token",
                           "ssl_password", "sasl_password", "auth", "access_token"})


def redact_url(url: str) -> str:
    """``url`` with its password (and secret query parameters) replaced by ``***``.

    ``scheme://user:pw@host`` keeps the user; ``scheme://pw@host`` (a bare user part,
    which some clients, Redis's among them, take as the password) is masked whole.
    A string that does not parse as a URL is masked whole if it has an ``@`` in it.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return MASK if "@" in url else url
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{host}" if user else f":{MASK}@{host}"
        else:
            netloc = f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = "&".join(f"{quote(k, safe='')}="
                             f"{MASK if k.lower() in SECRET_PARAMS else quote(v, safe=':/*')}"
                             for k, v in pairs)
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret (urlunsplit would also drop an empty netloc's //)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_in(text: str, url: str) -> str:
    """``text`` (an error message, say) with ``url`` and its secrets shown redacted."""
    out = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
        secrets = [s for s in (parts.password,) if s]
        if parts.username and parts.password is None:
            secrets.append(parts.username)
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMS and v]
    except ValueError:
        return out
    for s in secrets:
        out = out.replace(s, MASK)
    return out
