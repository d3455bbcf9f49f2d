"""``POST /get-online-features``: Feast's request and reply over the one online read path."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..online.lookup import FeatureValue
from ..online.read import read_features
from ..timestamps import now_micros, to_iso
from ..transforms import TransformError, request_names
from .http import EPOCH, READ_KEYS, HTTPError, ServerState, endpoint, json_response, read_request

log = logging.getLogger(__name__)

#: Entity rows read between two yields to the event loop. A read runs on the loop (an
#: online read is one SELECT or one MGET: inline is fastest for the small reads that
#: are the common case); a large one yields every chunk, so it delays other requests
#: by one chunk, not by the whole read.
READ_CHUNK = 500

def _feature_refs(body: dict[str, Any]) -> list[str]:
    service = body.get("feature_service")
    features = body.get("features")
    if service is not None and features is not None:
        raise HTTPError(400, "give either 'features' or 'feature_service', not both")
    if service is not None:
        if not isinstance(service, str) or not service.strip():
            raise HTTPError(400, f"'feature_service' must be a service name, got {service!r}")
        return [service if service.startswith("@") else "@" + service]
    if features is None:
        raise HTTPError(400, "the request needs 'features' (a list of \"view:feature\")"
                             " or 'feature_service'")
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, list) or not features or \
            not all(isinstance(f, str) for f in features):
        raise HTTPError(400, "'features' must be a non-empty list of strings like"
                             " \"view:feature\"")
    return features


def _entity_columns(body: dict[str, Any], needed: list[str], request: Sequence[str] = ()
                    ) -> tuple[list[str], list[list[Any]]]:
    entities = body.get("entities")
    context = body.get("request_context")
    if context is not None:  # request values apart (Feast's Go server), else in entities
        if not isinstance(context, dict):
            raise HTTPError(400, "'request_context' must be an object of request value columns")
        unknown = [n for n in context if n not in request]
        if unknown:
            raise HTTPError(400, f"request_context column(s) {unknown} are not request values"
                                 f" of the requested transforms; request values: {list(request)}")
        if isinstance(entities, dict):
            entities = {**entities, **context}
    if not isinstance(entities, dict) or not entities:
        raise HTTPError(400, "'entities' must be an object of join key columns, e.g. "
                             f"{{\"{needed[0] if needed else 'customer_id'}\": [\"c1\", \"c2\"]}}")
    names = list(entities)
    unknown = [n for n in names if n not in needed and n not in request]
    if unknown:
        also = f"; request values: {list(request)}" if request else ""
        raise HTTPError(400, f"entity column(s) {unknown} are not join keys of the requested"
                             f" features; join keys: {needed}{also}")
    missing = [n for n in needed if n not in entities]
    if missing:
        raise HTTPError(400, f"missing join key column(s) {missing} in 'entities'"
                             f" (the requested features need {needed})")
    columns = []
    for n in names:
        col = entities[n]
        if not isinstance(col, list):
            raise HTTPError(400, f"entities.{n} must be a list of values, got {col!r}")
        columns.append(col)
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise HTTPError(400, "entity columns differ in length: "
                        + ", ".join(f"{n}={len(c)}" for n, c in zip(names, columns, strict=True)))
    return names, columns


def _column(fvs: list[FeatureValue], iso: dict[int | None, str | None]) -> dict[str, list[Any]]:
    values = []
    times = []
    for fv in fvs:
        v = fv.value
        # JSON has no NaN or infinity: such values are sent as null.
        values.append(None if v.__class__ is float and not math.isfinite(v) else v)
        ts = fv.event_timestamp
        text = iso.get(ts)
        if text is None:  # the features of one row share its time: format it once
            text = iso[ts] = to_iso(ts)
        times.append(text)
    return {"values": values, "statuses": [fv.status for fv in fvs], "event_timestamps": times}


@endpoint("get-online-features")
async def get_online_features(state: ServerState, request: Request) -> Response:
    body = await read_request(state, request, READ_KEYS, "get-online-features")
    defs = state.defs
    refs = _feature_refs(body)
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise HTTPError(400, f"'full_feature_names' must be true or false, got {full!r}")
    pairs, names, needed = state.resolve(refs, full)
    wanted = request_names(defs, pairs)
    key_names, columns = _entity_columns(body, needed, list(wanted))
    n = len(columns[0])
    if n > state.max_entities:
        raise HTTPError(413, f"{n} entities in one request is over the cap of"
                             f" {state.max_entities} ([server] max_entities); split the request")
    rows = [dict(zip(key_names, values, strict=True)) for values in zip(*columns, strict=True)]
    online = state.ready_stores.online
    now = now_micros()  # one read time for every chunk: statuses agree across the reply
    per_feature: list[list[FeatureValue]] = [[] for _ in pairs]
    for start in range(0, n, READ_CHUNK):
        if start:  # let the other requests (/health among them) run between chunks
            await asyncio.sleep(0)
        try:
            found = read_features(defs, online, pairs, rows[start:start + READ_CHUNK], now=now,
                                first_row=start)
        except TransformError as exc:  # the transform's fault, not the request's
            log.warning("get-online-features: %s", exc)
            raise HTTPError(500, str(exc)) from None
        except ValueError as exc:  # a join key or request value of the wrong type
            raise HTTPError(400, str(exc)) from None
        for j, pair in enumerate(pairs):
            per_feature[j].extend(r[pair] for r in found)
    shown = [j for j, k in enumerate(key_names) if k not in wanted]  # join keys echoed
    key_names = [key_names[j] for j in shown]
    results = [{"values": columns[j], "statuses": ["PRESENT"] * n,
                "event_timestamps": [EPOCH] * n} for j in shown]
    iso: dict[int | None, str | None] = {None: EPOCH}
    for fvs in per_feature:
        results.append(_column(fvs, iso))
    return json_response({"metadata": {"feature_names": key_names + names}, "results": results})
