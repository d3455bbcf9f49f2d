"""``POST /push``: Feast's push request, one commit per request (rows, dead letters)."""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..definitions import RESERVED
from ..events import Event
from ..ingest.commit import BatchResult, Decoded
from ..ingest.sources.base import Record
from ..metrics import record_batch
from ..online.base import OnlineStore
from .http import PUSH_KEYS, PUSH_TARGETS, HTTPError, ServerState, endpoint, json_response, read_request

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


def _rows_of(df: Any, known: frozenset[str], drop_unknown: bool) -> list[dict[str, Any]]:
    """The rows of ``df``: a list of row objects, or equal-length columns (Feast's shape).

    A scalar is not repeated down a column: that would turn a small request into any
    number of large rows. A column no target view declares (``known``) would have its
    name repeated in every row and every dead letter: it is refused, or dropped when
    every target view ignores extra fields (``drop_unknown``). Row objects carry their
    own names: their unknown fields are the decoder's to reject, row by row.
    """
    if isinstance(df, list):  # also accepted: a list of row objects
        for i, row in enumerate(df):
            if not isinstance(row, dict):
                raise HTTPError(400, f"df[{i}] must be an object, got {type(row).__name__}")
        return df
    if not isinstance(df, dict) or not df:
        raise HTTPError(400, "'df' must be an object of columns, e.g. {\"customer_id\": [\"c1\"],"
                             " \"event_timestamp\": [\"2026-01-05T10:00:00Z\"], ...}")
    unknown = [k for k in df if k not in known]
    if unknown and not drop_unknown:
        raise HTTPError(400, f"unknown column(s) {[_short(k) for k in unknown[:10]]} in df;"
                             f" expected: {', '.join(sorted(known))}")
    columns = {k: c for k, c in df.items() if k in known}
    for name, col in columns.items():
        if not isinstance(col, list):
            raise HTTPError(400, f"df column {name!r} must be a list of values, one per row"
                                 f" (a value is not repeated down a column), got"
                                 f" {type(col).__name__}")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise HTTPError(400, "df columns differ in length: "
                        + ", ".join(f"{k}={len(c)}" for k, c in columns.items()))
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _short(name: str) -> str:
    return name if len(name) <= 60 else name[:57] + "..."


def _known_columns(state: ServerState, view: str | None) -> tuple[frozenset[str], bool]:
    """The names the target view(s) declare, and whether every one ignores extra fields."""
    views = [state.defs.views[view]] if view is not None else list(state.defs.views.values())
    names = set(RESERVED)
    for v in views:
        names.update(state.defs.entities[v.entity].join_keys)
        names.update(v.feature_names)
    return frozenset(names), all(v.extra == "ignore" for v in views)


def _encode_row(row: dict[str, Any]) -> bytes:
    try:
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise HTTPError(400, f"cannot encode a row: {exc}") from None
    except RecursionError:
        raise HTTPError(400, "cannot encode a row: a value is nested too deeply") from None


def _offline_only(decoded: Decoded, records: list[Record], online: OnlineStore) -> Decoded:
    """``to: offline``: keep the rows the online store would not serve; refuse the others.

    The online row is the log's as-of join at +infinity (I1), so a logged row that is
    newer than the served one would have to be served. An offline push backfills
    history: a row at or after its entity's online row (or with none online) is a dead
    letter that says to push it with ``to: online_and_offline``.
    """
    good, bad = decoded
    by_view: dict[str, list[int]] = {}
    for i, (ev, _) in enumerate(good):
        by_view.setdefault(ev.view, []).append(i)
    served: dict[int, int | None] = {}
    for view, idx in by_view.items():
        rows = online.get(view, [good[i][0].entity for i in idx])
        for i, row in zip(idx, rows, strict=True):
            served[i] = None if row is None else row.event_ts
    keep: list[tuple[Event, str]] = []
    refused = list(bad)
    by_position = {r.position: r for r in records}
    for i, (ev, pos) in enumerate(good):
        ts = served[i]
        if ts is not None and ev.event_ts < ts:
            keep.append((ev, pos))
        else:
            refused.append((by_position[pos], OFFLINE_REFUSAL))
    return keep, refused


OFFLINE_REFUSAL = ("to=offline backfills history: this row is not older than its entity's"
                   " online row, so the log would have to serve it; push it with"
                   " to=online_and_offline")


@endpoint("push")
async def push(state: ServerState, request: Request) -> Response:
    _check_token(state, request)
    body = await read_request(state, request, PUSH_KEYS, "push")
    to = body.get("to", "online")
    if to not in PUSH_TARGETS:
        raise HTTPError(400, f"'to' must be one of {sorted(PUSH_TARGETS)}, got {to!r}")
    if "df" not in body:
        raise HTTPError(400, "the push request needs 'df' (the rows, as columns)")
    source, view = _push_target(state, body)
    rows = _rows_of(body["df"], *_known_columns(state, view))
    if not rows:
        raise HTTPError(400, "'df' has no rows")
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
    records = [Record(_encode_row(row), f"push:{request_id}:{i}") for i, row in enumerate(rows)]

    def commit() -> BatchResult:
        committer = state.committer(view)
        decoded = committer.decode(records)
        if to == "offline":
            decoded = _offline_only(decoded, records, state.ready_stores.online)
        return committer.commit(source, records, decoded=decoded)

    result: BatchResult = await state.on_commit_thread(commit)
    record_batch(source, len(records), result.stored, result.duplicates, result.rejected,
                 result.seconds)
    reply = {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "dead_letters": result.rejected,
        "rejected": result.rejected,
        "rejects": [{"row": int(pos.rsplit(":", 1)[1]), "position": pos, "reason": why}
                    for pos, why in result.rejects],
        "high_seq": result.high_seq,
        "source": source,
        "to": to,
        # Where the stored rows went: the log always (it is the online store's source),
        # the online store unless to=offline (whose rows are all older than it serves).
        "logged": result.stored > 0,
        "online_updated": to != "offline" and result.stored > 0,
    }
    # Every row a dead letter: the request did nothing a client wanted.
    return json_response(reply, 422 if result.rejected == len(records) else 200)
