"""The asyncio components as async tests on pytest-asyncio's loop: the file source's read
loop, a SourceRunner over a real file source and committer, and /push through the ASGI
app (httpx.AsyncClient, the app's own lifespan) over real stores."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from asof_stream.config import Config, load_config
from asof_stream.definitions import FileSourceConfig
from asof_stream.ingest.runner import SourceRunner
from asof_stream.ingest.sources.file import FileSource
from asof_stream.offline.log import Position, open_log
from asof_stream.server import create_app
from asof_stream.stores import open_stores
from tests.daemon_checks import assert_exactly_once, positions
from tests.fixtures_kafka import event, write_config
from tests.test_server_push import D5, READ

TAIL = """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
"""


def _project(root: Path) -> Config:
    write_config(root, TAIL, batch_size=50, batch_timeout_ms=20)
    (root / "events").mkdir()
    return load_config(root / "asof.toml")


def _append(path: Path, first: int, last: int) -> None:
    with path.open("ab") as fh:
        for i in range(first, last):
            fh.write(event(i) + b"\n")


async def test_file_source_reads_complete_lines_and_waits_for_a_newline(tmp_path: Path) -> None:
    config = _project(tmp_path)
    cfg = config.defs.sources["tail"]
    assert isinstance(cfg, FileSourceConfig)
    source = FileSource("tail", cfg, config.root)

    async def nothing_stored(keys: Collection[str] | None = None) -> dict[str, Position]:
        return {}

    async def no_flush() -> None:
        return None

    f = tmp_path / "events" / "a.jsonl"
    _append(f, 0, 30)
    with f.open("ab") as fh:
        fh.write(event(30)[:15])  # a partial last line
    await source.start(nothing_stored, no_flush)
    try:
        chunk = await source.read(20, 0.5)  # at most 20 records
        assert len(chunk.records) == 20 and chunk.starts == {next(iter(chunk.ends)): None}
        chunk = await source.read(100, 0.2)
        assert [r.position.rsplit(":", 1)[0] for r in chunk.records] == ["a.jsonl"] * 10
        (end,) = chunk.ends.values()
        assert end.next_offset == f.stat().st_size - 15  # the partial line is not consumed
        assert not source.caught_up()
        assert not (await source.read(100, 0.2)).records  # still no newline: nothing
        reading = asyncio.ensure_future(source.read(100, 5.0))
        await asyncio.sleep(0.2)  # the read loop polls the file meanwhile
        assert not reading.done()
        with f.open("ab") as fh:
            fh.write(event(30)[15:] + b"\n")
        chunk = await reading  # returns as soon as the line is complete
        assert [r.raw for r in chunk.records] == [event(30)]
        assert source.caught_up()
    finally:
        await source.close()


async def test_runner_commits_a_file_source_exactly_once(tmp_path: Path) -> None:
    """Two runs of a runner until caught up: the second starts at the stored position."""
    config = _project(tmp_path)
    cfg = config.defs.sources["tail"]
    assert isinstance(cfg, FileSourceConfig)
    f = tmp_path / "events" / "a.jsonl"
    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(1)
    stores = await loop.run_in_executor(executor, open_stores, config)
    try:
        for first, last in ((0, 230), (230, 300)):
            _append(f, first, last)  # more while no runner reads
            source = FileSource("tail", cfg, config.root)
            runner = SourceRunner(source, stores.committer(cfg.view), config.defs.ingest, executor,
                                  asyncio.Event(), until_caught_up=True)
            try:
                await runner.run()
            finally:
                await source.close()
            assert (runner.totals.stored, runner.totals.rejected) == (last - first, 0)
    finally:
        await loop.run_in_executor(executor, stores.close)
        executor.shutdown(wait=True)
    assert_exactly_once(tmp_path, set(range(300)))
    assert list(positions(tmp_path, "tail").values()) == [f.stat().st_size]


@asynccontextmanager
async def _client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config)
    async with app.router.lifespan_context(app):  # opens the stores, as uvicorn would
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://asof") as client:
            yield client


async def test_push_through_the_asgi_app(config: Config) -> None:
    async with _client(config) as client:
        r = await client.post("/push", headers={"x-request-id": "r1"}, json={
            "view": "customer_stats",
            "df": {"customer_id": ["c1", "c2", "c3"],
                   "event_timestamp": [f"{D5}T10:00:00Z", f"{D5}T11:00:00Z", "never"],
                   "spend_7d": [1.5, 2.0, 3.0], "tier": ["gold", "silver", "x"]}})
        assert r.status_code == 200, r.text
        assert (r.json()["stored"], r.json()["rejected"]) == (2, 1)
        got = (await client.post("/get-online-features", json=READ)).json()
        assert got["results"][1]["values"] == [1.5, 2.0]
        assert got["results"][2]["values"] == ["gold", "silver"]
        # Concurrent pushes: one transaction each, every row logged once.
        replies = await asyncio.gather(*(client.post("/push", json={
            "view": "customer_stats", "df": {"customer_id": [f"k{i}"],
                                             "event_timestamp": [f"{D5}T12:00:00Z"],
                                             "spend_7d": [float(i)]}}) for i in range(8)))
        assert [x.json()["stored"] for x in replies] == [1] * 8
        bad = await client.post("/push", content=b"[1]")
        assert bad.status_code == 400 and "expects a JSON object" in bad.json()["detail"]
    with open_log(config.offline_path, readonly=True) as log:
        assert (log.max_seq(), log.dead_letter_count()) == (10, 1)
        assert log.conn.execute("SELECT source, position FROM dead_letters").fetchall() == [
            ("http", "push:r1:2")]
