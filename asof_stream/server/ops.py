"""``GET /health``, ``GET /metrics``, the web page at ``GET /`` and ``GET /timeline``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..metrics import ONLINE_APPLIED_SEQ, ONLINE_LAG, REGISTRY
from ..monitoring.freshness import update_metrics
from ..redaction import redact_in, redact_url
from . import page as web_page
from . import timeline as web_timeline
from .http import HEALTH_TIMEOUT, PAGE_TIMEOUT, ServerState, endpoint, json_response

log = logging.getLogger(__name__)

def _probe(state: ServerState) -> dict[str, Any]:
    """The log's seq, the online store's applied seq and the lag between them (None
    over partition shards, whose seqs are per shard)."""
    stores = state.ready_stores
    log_seq = stores.log.max_seq()
    applied = stores.online.applied_seq()
    lag = None if stores.sharded else max(0, log_seq - applied)
    if lag is not None:
        ONLINE_LAG.set(lag)
        ONLINE_APPLIED_SEQ.set(applied)
    return {"log_seq": log_seq, "online_applied_seq": applied, "online_lag": lag}


@endpoint("health")
async def health(state: ServerState, request: Request) -> Response:
    """200 when both stores answer and the online store is at most ``[server]
    max_online_lag`` seqs behind the log; else 503 with ``status`` and ``reason``."""
    stores = state.stores
    if stores is None:
        return json_response({"status": "starting", "reason": "the stores are not open yet"},
                             503)
    online = redact_url(stores.online.url)
    try:
        info = await asyncio.wait_for(state.on_commit_thread(_probe, state), HEALTH_TIMEOUT)
    except (TimeoutError, redis.RedisError, sqlite3.Error, OSError) as exc:
        reason = redact_in(f"{type(exc).__name__}: {exc}", stores.online.url)
        return json_response({"status": "unavailable", "reason": reason, "detail": reason,
                              "online": online}, 503)
    bound = state.defs.server.max_online_lag
    if info["online_lag"] is not None and info["online_lag"] > bound:
        reason = (f"the online store is {info['online_lag']} seqs behind the log (applied"
                  f" {info['online_applied_seq']}, log {info['log_seq']}; [server]"
                  f" max_online_lag = {bound}); it is being caught up from the log")
        return json_response({"status": "behind", "reason": reason, "online": online,
                              "max_online_lag": bound, **info}, 503)
    return json_response({"status": "ok", "online": online, "max_online_lag": bound, **info})


@endpoint("metrics")
async def metrics(state: ServerState, request: Request) -> Response:
    stores = state.stores
    if stores is not None:
        try:
            stats = await asyncio.wait_for(state.on_commit_thread(stores.log.view_stats),
                                           HEALTH_TIMEOUT)
            update_metrics(state.config.defs, stats)
        except (TimeoutError, sqlite3.Error) as exc:
            log.warning("metrics: cannot read view stats: %s", exc)
        try:  # asof_online_lag_seqs, asof_online_applied_seq
            await asyncio.wait_for(state.on_commit_thread(_probe, state), HEALTH_TIMEOUT)
        except (TimeoutError, sqlite3.Error, OSError) as exc:
            log.warning("metrics: cannot read the online lag: %s", exc)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


# -- / (the web page) ------------------------------------------------------------------


@endpoint("page")
async def index(state: ServerState, request: Request) -> Response:
    """The web page; its reads run on the commit thread, which owns the log's connection."""
    stores = state.stores
    if stores is None:
        return HTMLResponse(web_page.render_unavailable("the stores are not open yet"), 503)
    try:
        data = await asyncio.wait_for(
            state.on_commit_thread(web_page.collect, state.config, stores.log), PAGE_TIMEOUT)
    except (TimeoutError, sqlite3.Error, OSError) as exc:
        log.warning("page: cannot read the stores: %s", exc)
        return HTMLResponse(web_page.render_unavailable(f"{type(exc).__name__}: {exc}"), 503)
    nonce = web_page.new_nonce()
    return HTMLResponse(web_page.render(data, request.query_params.get("q", ""), nonce),
                        headers=web_page.headers(nonce))


@endpoint("timeline")
async def timeline(state: ServerState, request: Request) -> Response:
    """One entity's events and the row chosen at a label time (reads on the commit thread)."""
    stores = state.stores
    if stores is None:
        return HTMLResponse(web_page.render_unavailable("the stores are not open yet"), 503)
    params = {k: request.query_params.get(k, "") for k in ("refs", "entity", "t", "strict",
                                                           "known")}
    try:
        data = await asyncio.wait_for(state.on_commit_thread(
            web_timeline.collect, state.config, stores.log, params), PAGE_TIMEOUT)
    except (TimeoutError, sqlite3.Error, OSError) as exc:
        log.warning("timeline: cannot read the stores: %s", exc)
        return HTMLResponse(web_page.render_unavailable(f"{type(exc).__name__}: {exc}"), 503)
    nonce = web_page.new_nonce()
    return HTMLResponse(web_timeline.render(data, nonce), 400 if data.error else 200,
                        headers=web_page.headers(nonce))
