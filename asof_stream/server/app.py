"""The ASGI feature server (starlette on uvicorn).

- ``POST /get-online-features``: Feast's request (``features`` or ``feature_service``,
  ``entities`` as columns, ``full_feature_names``) and reply (``metadata.feature_names``,
  join keys first, then one ``results`` entry per column with ``values``, ``statuses``
  and ``event_timestamps``), read by :func:`asof_stream.online.lookup.read_online`, the one read
  path the Python API and the ``online`` command use too.
- ``POST /push``: Feast's request (``push_source_name`` or ``view``, ``df`` as columns,
  ``to``); the rows go through :meth:`asof_stream.ingest.commit.Committer.commit`, one
  transaction per request, bad rows become dead letters. ``to`` is honoured within the
  invariants (see :data:`~asof_stream.server.http.PUSH_TARGETS`).
- ``GET /health`` (200 only when both stores answer), ``GET /metrics`` (Prometheus).
- ``GET /`` (``?q=`` filters the registry): the web page of :mod:`asof_stream.server.page`.
- ``GET /timeline?refs=&entity=&t=``: one entity's events and the row chosen at a label
  time (:mod:`asof_stream.server.timeline`).

Reads run on the event loop: an online read is one indexed SQLite SELECT or one Redis
MGET. Measured with ``scripts/bench_serving.py``: handing Redis reads to a pool of four
threads lowered throughput at 8 clients (2,140 vs 2,530 req/s on 2 cores), so they stay
inline; a large read yields to the loop every ``reads.READ_CHUNK`` entities (a small one
never does), and ``[server] max_entities`` caps one request.
Pushes and every use of the log's connection run on one commit thread, serialized.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Config
from ..online.heal import Healer, keep_healed
from ..stores import open_stores
from .http import ServerState, check_open_push, json_response
from .ops import health, index, metrics, timeline
from .push import push
from .reads import get_online_features

log = logging.getLogger(__name__)

def create_app(config: Config, *, heal: bool = True) -> Starlette:
    """The feature server app; the stores open (and heal) at startup, close at shutdown.

    ``heal``: keep a Redis online store in line with the log while serving (after a
    Redis reset or outage); off inside the daemon, which heals it itself.
    """
    state = ServerState(config)

    def bind(fn: Callable[[ServerState, Request], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            return await fn(state, request)

        return route

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.stores = await state.on_commit_thread(
            functools.partial(open_stores, config, online_may_fail=True))
        stop_healing = asyncio.Event()
        healing = None
        if heal and not state.stores.sharded and not state.stores.online.transactional:
            state.healer = Healer(state.stores.log, state.stores.online)
            healing = asyncio.ensure_future(
                keep_healed(state.healer, state.on_commit_thread, stop_healing))
        try:
            yield
        finally:
            stop_healing.set()
            if healing is not None:
                await healing
            stores, state.stores = state.stores, None
            if stores is not None:
                await state.on_commit_thread(stores.close)
            state.executor.shutdown(wait=True)

    async def not_found(request: Request, exc: Exception) -> Response:
        return json_response({"detail": f"no such endpoint: {request.method} {request.url.path}"},
                              404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return json_response({"detail": f"method {request.method} not allowed on"
                                         f" {request.url.path}"}, 405)

    app = Starlette(
        routes=[
            Route("/get-online-features", bind(get_online_features), methods=["POST"]),
            Route("/push", bind(push), methods=["POST"]),
            Route("/health", bind(health), methods=["GET"]),
            Route("/metrics", bind(metrics), methods=["GET"]),
            Route("/", bind(index), methods=["GET"]),
            Route("/timeline", bind(timeline), methods=["GET"]),
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
                on_ready: Callable[[str, int], None] | None = None,
                allow_open_push: bool = False, heal: bool = True) -> None:
    """Serve until ``stop`` is set (or forever). Signals are left to the caller.

    ``on_ready(host, port)`` is called once the socket listens and the stores are open
    (the port is the real one when ``port=0`` asked for any free port). Listening beyond
    loopback without a push token raises ValueError unless ``allow_open_push`` (or
    ``[server] allow_open_push``) says so.
    """
    cfg = config.defs.server
    host = host or cfg.host
    port = cfg.port if port is None else port
    check_open_push(config, host, allow_open_push)
    sock = listen(host, port)
    bound_port = sock.getsockname()[1]
    uv_config = uvicorn.Config(create_app(config, heal=heal), log_level="warning",
                               access_log=False, lifespan="on", loop="none",
                               timeout_graceful_shutdown=10,
                               timeout_keep_alive=max(1, min(5, int(cfg.request_timeout_s))),
                               http=_protocol(cfg.request_timeout_s))
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


def _protocol(timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol with a deadline on the request line and headers.

    uvicorn times out an idle keep-alive connection, but not one that opens and sends
    nothing, nor one that dribbles its headers: each request's headers must be in within
    ``timeout`` seconds of its first byte (of the connection, for the first request).
    The body has its own deadline, in :func:`~asof_stream.server.http.read_body`.
    """

    class Protocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._disarm()  # idle from here on: uvicorn's keep-alive timeout applies
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Protocol


class _QuietServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers (the daemon or CLI owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
