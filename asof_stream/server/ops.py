"""``GET /health``, ``GET /metrics`` and the web page at ``GET /``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..metrics import REGISTRY
from ..monitoring.freshness import update_metrics
from . import page as web_page
from .http import HEALTH_TIMEOUT, PAGE_TIMEOUT, ServerState, endpoint, json_response

log = logging.getLogger(__name__)

@endpoint("health")
async def health(state: ServerState, request: Request) -> Response:
    stores = state.stores
    if stores is None:
        return json_response({"status": "starting"}, 503)

    def probe() -> dict[str, Any]:
        return {"log_seq": stores.log.max_seq(), "online_applied_seq": stores.online.applied_seq()}

    try:
        info = await asyncio.wait_for(state.on_commit_thread(probe), HEALTH_TIMEOUT)
    except (TimeoutError, redis.RedisError, sqlite3.Error, OSError) as exc:
        return json_response({"status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"},
                              503)
    return json_response({"status": "ok", "online": stores.online.url, **info})


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
