"""Request plumbing shared by the routes: JSON bodies, limits, errors, the server state."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
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
from ..definitions import HttpSourceConfig, output_names
from ..ingest.commit import Committer, StoreError
from ..metrics import REQUEST_SECONDS
from ..online.heal import Healer
from ..stores import Stores

log = logging.getLogger(__name__)

EPOCH = "1970-01-01T00:00:00Z"  # Feast's event_timestamp for join keys and missing values
#: Accepted ``to`` values. The log is the source of truth and the online store must
#: equal its as-of join at +infinity (I1) and be rebuildable from it (I2). So a row only
#: in the online store cannot be: ``online`` rows are logged too (that is also what
#: makes them exactly-once: their event_id and position are in the log). ``offline``
#: rows are logged and leave the online store as it is, which only a row older than
#: the served one can do: the others are refused (see ``push._offline_only``).
#: ``both`` is an alias of ``online_and_offline``.
PUSH_TARGETS = frozenset({"online", "offline", "online_and_offline", "both"})
PUSH_KEYS = frozenset({"push_source_name", "view", "df", "to", "allow_registry_cache",
                       "transform_on_write"})
READ_KEYS = frozenset({"features", "feature_service", "entities", "full_feature_names",
                       "request_context"})
HEALTH_TIMEOUT = 2.0
PAGE_TIMEOUT = 10.0  # the page waits behind pushes on the commit thread
_encode = msgspec.json.Encoder().encode


def push_token(config: Config) -> str | None:
    """The push token (``ASOF_PUSH_TOKEN`` first); an empty or blank one is no token."""
    token = os.environ.get("ASOF_PUSH_TOKEN") or config.defs.server.push_token
    return token if token and token.strip() else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_open_push(config: Config, host: str, allow_open_push: bool = False) -> None:
    """Refuse to listen beyond loopback with /push open to anyone (no push token)."""
    if is_loopback(host) or push_token(config) is not None:
        return
    if allow_open_push or config.defs.server.allow_open_push:
        log.warning("feature server on %s: /push accepts writes from anyone (allow_open_push)",
                    host)
        return
    raise ValueError(
        f"{config.path}: refusing to serve on {host}: /push would accept writes from anyone"
        " on the network (no push token); set [server] push_token or ASOF_PUSH_TOKEN, or"
        " pass --allow-open-push ([server] allow_open_push = true) to mean it")


class HTTPError(Exception):
    """A request the server refuses, with its status code and a message naming why."""

    def __init__(self, status: int, detail: str, *, close: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.close = close  # also close the connection (the client is not keeping up)


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
        token = push_token(config)
        self.token = token.encode() if token else None
        self.max_entities = server.max_entities
        self.request_timeout = server.request_timeout_s
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
            for name in self.defs.join_keys_of(view):
                if name not in needed:
                    needed.append(name)
        if len(self._resolved) < 4096:  # bounded: request shapes come from clients
            self._resolved[key] = (pairs, names, needed)
        return pairs, names, needed

    def committer(self, view: str | None) -> Committer:
        """One committer per bound view, made and used on the commit thread only."""
        if self.ready_stores.sharded:
            raise HTTPError(409, "push is not available with store.shards = 'partition':"
                                 " each shard takes its events from its Kafka partition;"
                                 " produce them to Kafka, keyed by entity")
        c = self.committers.get(view)
        if c is None:
            c = self.committers[view] = self.ready_stores.committer(view)
        return c


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it all).

    A client that has not sent the whole body ``timeout`` seconds after its headers gets
    408 and its connection closed: a slow sender cannot hold a connection forever.
    """
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
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, f"request body is over the limit of {limit} bytes"
                                         " ([server] max_body_bytes)")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPError(408, f"the request body did not arrive within {timeout:g} s"
                             f" ({size} bytes received; [server] request_timeout_s)",
                        close=True) from None
    return b"".join(chunks)


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        raise HTTPError(400, f"empty request body: {what} expects a JSON object")
    try:
        obj = msgspec.json.decode(body)
    except RecursionError:
        raise HTTPError(400, "malformed JSON: nested too deeply") from None
    except msgspec.DecodeError:
        try:  # the stdlib also reads NaN and Infinity, which allow_nan features accept
            obj = json.loads(body)
        except RecursionError:
            raise HTTPError(400, "malformed JSON: nested too deeply") from None
        except ValueError as exc:
            raise HTTPError(400, f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise HTTPError(400, f"{what} expects a JSON object, got {type(obj).__name__}")
    return obj


def check_keys(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPError(400, f"unknown field(s) {unknown} in the {what} request; "
                             f"expected: {', '.join(sorted(allowed))}")


async def read_request(state: ServerState, request: Request, allowed: frozenset[str],
                       what: str) -> dict[str, Any]:
    """The request's body as a JSON object (within [server] max_body_bytes and
    request_timeout_s) with no field outside ``allowed``; ``what`` names the request."""
    body = parse_json_object(await read_body(request, state.max_body, state.request_timeout), what)
    check_keys(body, allowed, what)
    return body


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
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
                if exc.close:
                    headers["Connection"] = "close"
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
