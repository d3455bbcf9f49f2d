"""The ASGI feature server (starlette on uvicorn).

- ``POST /get-online-features``: Feast's request (``features`` or ``feature_service``,
  ``entities`` as columns, ``full_feature_names``) and reply (``metadata.feature_names``,
  join keys first, then one ``results`` entry per column with ``values``, ``statuses``
  and ``event_timestamps``), read by :func:`asof_stream.lookup.read_online`, the one read
  path the Python API and the ``online`` command use too.
- ``POST /push``: Feast's request (``push_source_name`` or ``view``, ``df`` as columns,
  ``to``); the rows go through :meth:`asof_stream.commit.Committer.commit`, one
  transaction per request, bad rows become dead letters. Every accepted row is logged
  and applied online whatever ``to`` says (see :data:`PUSH_TARGETS`).
- ``GET /health`` (200 only when both stores answer), ``GET /metrics`` (Prometheus).
- ``GET /`` (``?q=`` filters the registry): the web page of :mod:`asof_stream.server.page`.

Reads run on the event loop: an online read is one indexed SQLite SELECT or one Redis
MGET. Measured with ``scripts/bench_serving.py``: handing Redis reads to a pool of four
threads lowered throughput at 8 clients (2,140 vs 2,530 req/s on 2 cores), so they stay
inline too.
Pushes and every use of the log's connection run on one commit thread, serialized.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from typing import Any

import msgspec
import redis
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..config import Config
from ..definitions import HttpSourceConfig
from ..ingest.commit import Committer, StoreError
from ..ingest.sources.base import Record
from ..metrics import FRESHNESS, INGEST_FRESHNESS, REGISTRY, REQUEST_SECONDS, record_batch
from ..offline.shards import is_sharded
from ..online.lookup import FeatureValue, output_names, read_online
from ..stores import Stores, open_serving_stores
from ..timestamps import now_micros, to_iso
from . import page as web_page

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


def _json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
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


def _check_keys(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
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
                response = _json_response({"detail": exc.detail}, exc.status, headers)
            except (redis.RedisError, sqlite3.Error, StoreError, OSError) as exc:
                log.warning("%s: store unavailable: %s", name, exc)
                response = _json_response({"detail": f"store unavailable: {exc}"}, 503)
            except Exception as exc:  # a bug: say so, keep serving
                log.exception("%s: internal error", name)
                response = _json_response({"detail": f"internal error: {exc!r}"}, 500)
            REQUEST_SECONDS.labels(name, str(response.status_code)).observe(
                time.perf_counter() - started)
            return response

        return handler

    return wrap


# -- /get-online-features -------------------------------------------------------------


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


def _entity_columns(body: dict[str, Any], needed: list[str]) -> tuple[list[str], list[list[Any]]]:
    entities = body.get("entities")
    if not isinstance(entities, dict) or not entities:
        raise HTTPError(400, "'entities' must be an object of join key columns, e.g. "
                             f"{{\"{needed[0] if needed else 'customer_id'}\": [\"c1\", \"c2\"]}}")
    names = list(entities)
    unknown = [n for n in names if n not in needed]
    if unknown:
        raise HTTPError(400, f"entity column(s) {unknown} are not join keys of the requested"
                             f" features; join keys: {needed}")
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
    body = parse_json_object(await read_body(request, state.max_body), "get-online-features")
    _check_keys(body, READ_KEYS, "get-online-features")
    defs = state.defs
    refs = _feature_refs(body)
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise HTTPError(400, f"'full_feature_names' must be true or false, got {full!r}")
    pairs, names, needed = state.resolve(refs, full)
    key_names, columns = _entity_columns(body, needed)
    rows = [dict(zip(key_names, values, strict=True)) for values in zip(*columns, strict=True)]
    online = state.ready_stores.online
    try:
        found = read_online(defs, online, pairs, rows) if rows else []
    except ValueError as exc:  # a join key of the wrong type
        raise HTTPError(400, str(exc)) from None
    n = len(rows)
    results = [{"values": col, "statuses": ["PRESENT"] * n, "event_timestamps": [EPOCH] * n}
               for col in columns]
    iso: dict[int | None, str | None] = {None: EPOCH}
    for pair in pairs:
        results.append(_column([r[pair] for r in found], iso))
    return _json_response({"metadata": {"feature_names": key_names + names}, "results": results})


# -- /push ------------------------------------------------------------------------------


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
    _check_keys(body, PUSH_KEYS, "push")
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
    return _json_response({
        "stored": result.stored,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "rejects": [{"row": int(pos.rsplit(":", 1)[1]), "position": pos, "reason": why}
                    for pos, why in result.rejects],
        "high_seq": result.high_seq,
        "source": source,
        "to": "online_and_offline",
    })


# -- /health and /metrics ---------------------------------------------------------------


@endpoint("health")
async def health(state: ServerState, request: Request) -> Response:
    stores = state.stores
    if stores is None:
        return _json_response({"status": "starting"}, 503)

    def probe() -> dict[str, Any]:
        return {"log_seq": stores.log.max_seq(), "online_applied_seq": stores.online.applied_seq()}

    try:
        info = await asyncio.wait_for(state.on_commit_thread(probe), HEALTH_TIMEOUT)
    except (TimeoutError, redis.RedisError, sqlite3.Error, OSError) as exc:
        return _json_response({"status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"},
                              503)
    return _json_response({"status": "ok", "online": stores.online.url, **info})


def refresh_freshness(stats: Mapping[str, Mapping[str, Any]], now: int) -> None:
    for view, st in stats.items():
        if st.get("latest_event_timestamp") is not None:
            FRESHNESS.labels(view).set((now - st["latest_event_timestamp"]) / 1e6)
        if st.get("latest_ingest_ts") is not None:
            INGEST_FRESHNESS.labels(view).set((now - st["latest_ingest_ts"]) / 1e6)


@endpoint("metrics")
async def metrics(state: ServerState, request: Request) -> Response:
    stores = state.stores
    if stores is not None:
        try:
            stats = await asyncio.wait_for(state.on_commit_thread(stores.log.view_stats),
                                           HEALTH_TIMEOUT)
            refresh_freshness(stats, now_micros())
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


# -- the app ----------------------------------------------------------------------------


def create_app(config: Config) -> Starlette:
    """The feature server app; the stores open (and heal) at startup, close at shutdown."""
    state = ServerState(config)

    def bind(fn: Callable[[ServerState, Request], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            return await fn(state, request)

        return route

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.stores = await state.on_commit_thread(open_serving_stores, config)
        try:
            yield
        finally:
            stores, state.stores = state.stores, None
            if stores is not None:
                await state.on_commit_thread(stores.close)
            state.executor.shutdown(wait=True)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _json_response({"detail": f"no such endpoint: {request.method} {request.url.path}"},
                              404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _json_response({"detail": f"method {request.method} not allowed on"
                                         f" {request.url.path}"}, 405)

    app = Starlette(
        routes=[
            Route("/get-online-features", bind(get_online_features), methods=["POST"]),
            Route("/push", bind(push), methods=["POST"]),
            Route("/health", bind(health), methods=["GET"]),
            Route("/metrics", bind(metrics), methods=["GET"]),
            Route("/", bind(index), methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.server = state
    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port fails with a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(config: Config, stop: asyncio.Event | None = None, host: str | None = None,
                port: int | None = None, *,
                on_ready: Callable[[str, int], None] | None = None) -> None:
    """Serve until ``stop`` is set (or forever). Signals are left to the caller.

    ``on_ready(host, port)`` is called once the socket listens and the stores are open
    (the port is the real one when ``port=0`` asked for any free port).
    """
    cfg = config.defs.server
    host = host or cfg.host
    port = cfg.port if port is None else port
    sock = listen(host, port)
    bound_port = sock.getsockname()[1]
    uv_config = uvicorn.Config(create_app(config), log_level="warning", access_log=False,
                               lifespan="on", loop="none", timeout_graceful_shutdown=10)
    server = _QuietServer(uv_config)
    stop = stop or asyncio.Event()

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

    async def ready() -> None:
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.01)
        if server.started:
            log.info("feature server listening", extra={"host": host, "port": bound_port})
            if on_ready is not None:
                on_ready(host, bound_port)

    watcher = asyncio.ensure_future(watch())
    announcer = asyncio.ensure_future(ready())
    try:
        await server.serve(sockets=[sock])
    except SystemExit:  # uvicorn exits this way when the app's startup fails
        raise RuntimeError("the feature server could not start (see the log above)") from None
    finally:
        watcher.cancel()
        announcer.cancel()
        sock.close()


class _QuietServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers (the daemon or CLI owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
