"""``asof-stream serve``: the feature server alone (``run`` starts it too with [server])."""

from __future__ import annotations

import asyncio
import signal

import click

from ..config import Config
from .common import config_option, handle_errors, main


async def _serve(config: Config, host: str | None, port: int | None,
                 allow_open_push: bool) -> None:
    from ..server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(h: str, p: int) -> None:
        click.echo(f"feature server listening on http://{h}:{p}", err=True)

    await serve(config, stop, host, port, on_ready=ready, allow_open_push=allow_open_push)


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: [server] host,"
                                           " 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="Port (default: [server] port, 6566; 0 picks a free one).")
@click.option("--allow-open-push", is_flag=True,
              help="Listen beyond loopback with no push token: /push open to anyone"
                   " (default: refused; [server] allow_open_push).")
@config_option
@handle_errors
def serve(config: Config, host: str | None, port: int | None, allow_open_push: bool) -> None:
    """Run the feature server: /get-online-features, /push, /health, /metrics."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(config, host, port, allow_open_push))
        return
    uvloop.run(_serve(config, host, port, allow_open_push))
