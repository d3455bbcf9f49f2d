"""``POST /push``: Feast's push request, one commit per request (rows, dead letters)."""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..ingest.sources.base import Record
from ..metrics import record_batch
from .http import (
    PUSH_KEYS,
    PUSH_TARGETS,
    HTTPError,
    ServerState,
    check_keys,
    endpoint,
    json_response,
    parse_json_object,
    read_body,
)

log = logging.getLogger(__name__)

def _check_token(state: ServerState, request: Request) -> None:
    if state.token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPError(401, "/push needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), state.token):
        raise HTTPError(401, "wrong push token")


def _push_target(state: ServerState, body: dict[str, Any]) -> tuple[str, str | None]:
    """(source name for the log and dead letters, the view the rows are bound to)."""
    name = body.get("push_source_name")
    view = body.get("view")
    for key, value in (("push_source_name", name), ("view", view)):
        if value is not None and not isinstance(value, str):
            raise HTTPError(400, f"'{key}' must be a string, got {value!r}")
    source = "http"
    bound: str | None = None
    if name is not None:
        src = state.http_sources.get(name)
        if src is not None:
            source, bound = name, src.view
        elif name in state.defs.views:
            bound = name
        else:
            known = sorted(state.http_sources) + sorted(state.defs.views)
            raise HTTPError(404, f"unknown push_source_name {name!r}; known http sources and"
                                 f" views: {', '.join(known) or 'none'}")
    if view is not None:
        if view not in state.defs.views:
            raise HTTPError(404, f"unknown view {view!r}; known views: "
                                 + ", ".join(sorted(state.defs.views)))
        if bound is not None and bound != view:
            raise HTTPError(400, f"push_source_name {name!r} is bound to view {bound!r},"
                                 f" not {view!r}")
        bound = view
    return source, bound


def _rows_of(df: Any) -> list[dict[str, Any]]:
    if isinstance(df, list):  # also accepted: a list of row objects
        for i, row in enumerate(df):
            if not isinstance(row, dict):
                raise HTTPError(400, f"df[{i}] must be an object, got {type(row).__name__}")
        return df
    if not isinstance(df, dict) or not df:
        raise HTTPError(400, "'df' must be an object of columns, e.g. {\"customer_id\": [\"c1\"],"
                             " \"event_timestamp\": [\"2026-01-05T10:00:00Z\"], ...}")
    columns = {}
    for name, col in df.items():
        columns[name] = col if isinstance(col, list) else [col]
    lengths = {len(c) for c in columns.values() if len(c) != 1}
    if len(lengths) > 1:
        raise HTTPError(400, "df columns differ in length: "
                        + ", ".join(f"{k}={len(c)}" for k, c in columns.items()))
    n = lengths.pop() if lengths else 1
    # A scalar (or a one-item list) is repeated down the column, as pandas would.
    return [{k: (c[i] if len(c) == n else c[0]) for k, c in columns.items()} for i in range(n)]


def _encode_row(row: dict[str, Any]) -> bytes:
    try:
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise HTTPError(400, f"cannot encode a row: {exc}") from None


@endpoint("push")
async def push(state: ServerState, request: Request) -> Response:
    _check_token(state, request)
    body = parse_json_object(await read_body(request, state.max_body), "push")
    check_keys(body, PUSH_KEYS, "push")
    to = body.get("to", "online")
    if to not in PUSH_TARGETS:
        raise HTTPError(400, f"'to' must be one of {sorted(PUSH_TARGETS)}, got {to!r}")
    if "df" not in body:
        raise HTTPError(400, "the push request needs 'df' (the rows, as columns)")
    source, view = _push_target(state, body)
    rows = _rows_of(body["df"])
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
    records = [Record(_encode_row(row), f"push:{request_id}:{i}") for i, row in enumerate(rows)]

    def commit() -> Any:
        return state.committer(view).commit(source, records)

    result = await state.on_commit_thread(commit)
    record_batch(source, len(records), result.stored, result.duplicates, result.rejected,
                 result.seconds)
    return json_response({
        "stored": result.stored,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "rejects": [{"row": int(pos.rsplit(":", 1)[1]), "position": pos, "reason": why}
                    for pos, why in result.rejects],
        "high_seq": result.high_seq,
        "source": source,
        "to": "online_and_offline",
    })
