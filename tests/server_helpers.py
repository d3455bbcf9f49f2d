"""Run the feature server on a real loopback socket in a background thread, for tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from asof_stream.config import Config
from asof_stream.server import serve


@contextmanager
def running_server(config: Config, timeout: float = 30.0, *, heal: bool = True) -> Iterator[str]:
    """Start ``serve(config)`` on a free port; yields ``http://127.0.0.1:PORT``; stops it.

    ``heal=False``: the server does not heal a Redis store (to look at it while behind).
    """
    ready = threading.Event()
    address: list[str] = []
    errors: list[BaseException] = []
    holder: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = stop

        def on_ready(host: str, port: int) -> None:
            address.append(f"http://{host}:{port}")
            ready.set()

        await serve(config, stop, "127.0.0.1", 0, on_ready=on_ready, heal=heal)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # shown by the test below
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="feature-server", daemon=True)
    thread.start()
    if not ready.wait(timeout) or errors or not address:
        raise RuntimeError(f"the feature server did not start: {errors!r}")
    try:
        yield address[0]
    finally:
        loop = holder["loop"]
        stop = holder["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        assert not thread.is_alive(), "the feature server did not stop"
        if errors:
            raise errors[0]
