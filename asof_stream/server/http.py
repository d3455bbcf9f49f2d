"""Request plumbing shared by the routes: JSON bodies, limits, errors, the server state."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
import redis
from starlette.requests import Request
from starlette.responses import Response

from ..config import Config
from ..definitions import HttpSourceConfig
from ..ingest.commit import Committer, StoreError
from ..metrics import REQUEST_SECONDS
from ..offline.shards import is_sharded
from ..online.heal import Healer
from ..online.lookup import output_names
from ..stores import Stores

log = logging.getLogger(__name__)

EPOCH = "1970-01-01T00:00:00Z"  # Feast's event_timestamp for join keys and missing values
#: Accepted ``to`` values. The log is the source of truth and the online store must
#: equal its as-of join at +infinity (I1) and be rebuildable from it (I2): a row only in
#: the online store, or only in the log, would break one of the two. So every accepted
#: row is logged and applied online, whatever ``to`` says; the reply says so.
PUSH_TARGETS = frozenset({"online", "offline", "online_and_offline", "both"})
PUSH_KEYS = frozenset({"push_source_name", "view", "df", "to", "allow_registry_cache",
                       "transform_on_write"})
READ_KEYS = frozenset({"features", "feature_service", "entities", "full_feature_names"})
HEALTH_TIMEOUT = 2.0
PAGE_TIMEOUT = 10.0  # the page waits behind pushes on the commit thread
_encode = msgspec.json.Encoder().encode


class HTTPError(Exception):
    """A request the server refuses, with its status code and a message naming why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_encode(obj), status_code=status, media_type="application/json",
                    headers=headers)


class ServerState:
    """The stores, the commit thread and the settings of one running app."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.defs = config.defs
        server = config.defs.server
        self.max_body = server.max_body_bytes
        token = os.environ.get("ASOF_PUSH_TOKEN") or server.push_token
        self.token = token.encode() if token else None
        self.stores: Stores | None = None
        self.healer: Healer | None = None  # set while the server heals a Redis store
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asof-push")
        self.committers: dict[str | None, Committer] = {}
        self._resolved: dict[tuple[tuple[str, ...], bool],
                             tuple[list[tuple[str, str]], list[str], list[str]]] = {}
        self.http_sources = {name: src for name, src in config.defs.sources.items()
                             if isinstance(src, HttpSourceConfig)}

    @property
    def ready_stores(self) -> Stores:
        if self.stores is None:
            raise HTTPError(503, "the stores are not open yet")
        return self.stores

    async def on_commit_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    def resolve(self, refs: list[str], full: bool) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """(view, feature) pairs, output names and needed join keys; cached per request shape."""
        key = (tuple(refs), full)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit
        try:
            pairs = self.defs.resolve_refs(refs)
            names = output_names(pairs, full)
        except ValueError as exc:
            raise HTTPError(400, str(exc).replace(
                "use --full-feature-names (full_feature_names=True)",
                "set \"full_feature_names\": true")) from None
        needed: list[str] = []
        for view in dict.fromkeys(v for v, _ in pairs):
            for name in self.defs.entity_of(view).join_keys:
                if name not in needed:
                    needed.append(name)
        if len(self._resolved) < 4096:  # bounded: request shapes come from clients
            self._resolved[key] = (pairs, names, needed)
        return pairs, names, needed

    def committer(self, view: str | None) -> Committer:
        """One committer per bound view, made and used on the commit thread only."""
        if is_sharded(self.config):
            raise HTTPError(409, "push is not available with store.shards = 'partition':"
                                 " each shard takes its events from its Kafka partition;"
                                 " produce them to Kafka, keyed by entity")
        c = self.committers.get(view)
        if c is None:
            c = self.committers[view] = self.ready_stores.committer(view)
        return c


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it all)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPError(400, f"bad Content-Length header {length!r}") from None
        if declared > limit:
            raise HTTPError(413, f"request body of {declared} bytes is over the limit of {limit}"
                                 " bytes ([server] max_body_bytes)")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over the limit of {limit} bytes"
                                 " ([server] max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        raise HTTPError(400, f"empty request body: {what} expects a JSON object")
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        try:  # the stdlib also reads NaN and Infinity, which allow_nan features accept
            obj = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise HTTPError(400, f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise HTTPError(400, f"{what} expects a JSON object, got {type(obj).__name__}")
    return obj


def check_keys(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPError(400, f"unknown field(s) {unknown} in the {what} request; "
                             f"expected: {', '.join(sorted(allowed))}")


def endpoint(name: str) -> Callable[[Callable[[ServerState, Request], Awaitable[Response]]],
                                    Callable[[ServerState, Request], Awaitable[Response]]]:
    """Time the handler into the latency histogram and turn refusals into JSON errors."""

    def wrap(fn: Callable[[ServerState, Request], Awaitable[Response]]
             ) -> Callable[[ServerState, Request], Awaitable[Response]]:
        async def handler(state: ServerState, request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await fn(state, request)
            except HTTPError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                response = json_response({"detail": exc.detail}, exc.status, headers)
            except (redis.RedisError, sqlite3.Error, StoreError, OSError) as exc:
                log.warning("%s: store unavailable: %s", name, exc)
                response = json_response({"detail": f"store unavailable: {exc}"}, 503)
            except Exception as exc:  # a bug: say so, keep serving
                log.exception("%s: internal error", name)
                response = json_response({"detail": f"internal error: {exc!r}"}, 500)
            REQUEST_SECONDS.labels(name, str(response.status_code)).observe(
                time.perf_counter() - started)
            return response

        return handler

    return wrap
