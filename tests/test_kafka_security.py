"""Kafka security settings: TLS against a real TLS listener, SASL secrets, config errors."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asof_stream.config import ConfigError, load_config
from asof_stream.daemon import run_daemon
from asof_stream.ingest.sources.kafka import KafkaSource
from tests.daemon_checks import assert_exactly_once, kafka_source
from tests.fixtures_kafka import TlsBroker, event, run_cli, write_config

SECRET = "s3cr3t-Pa55word-never-shown"


def tls_source(bootstrap: str, topic: str, certs: str = "certs") -> str:
    return kafka_source(bootstrap, topic, extra=f"""security_protocol = "SSL"
ssl_cafile = "{certs}/ca.pem"
ssl_certfile = "{certs}/client.pem"
ssl_keyfile = "{certs}/client.key"
""")


def copy_certs(tls: TlsBroker, folder: Path) -> None:
    (folder / "certs").mkdir(parents=True)
    for name in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(tls.certs[name], folder / "certs" / name)


def test_daemon_and_replay_read_over_tls_with_a_client_certificate(tls_broker: TlsBroker,
                                                                   tmp_path: Path) -> None:
    topic = tls_broker.create_topic(2)
    tls_broker.produce(topic, [event(i) for i in range(400)], partitions=2)
    before = tls_broker.proxy.verified_clients
    folder = tmp_path / "d"
    copy_certs(tls_broker, folder)  # paths in the config are relative to its folder
    cfg = write_config(folder, tls_source(tls_broker.bootstrap, topic))
    # bounded: without working TLS settings the daemon would retry the connection forever
    assert asyncio.run(asyncio.wait_for(run_daemon(load_config(cfg), until_caught_up=True),
                                        120)) == 0
    assert_exactly_once(folder, set(range(400)))
    assert tls_broker.proxy.verified_clients > before
    # replay --kafka takes the same security settings from the config's source
    other = tmp_path / "r"
    copy_certs(tls_broker, other)
    cfg2 = write_config(other, tls_source(tls_broker.bootstrap, topic))
    r = run_cli("replay", "--config", str(cfg2), "--kafka", topic, "--from-offset", "100")
    assert r.returncode == 0, r.stderr
    assert_exactly_once(other, {i for i in range(400) if i // 2 >= 100})


def test_tls_files_are_checked_at_config_load(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tls_source("127.0.0.1:1", "t", certs="nowhere"))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    msg = str(err.value)
    assert "sources.events.ssl_cafile" in msg and "nowhere/ca.pem" in msg and "no such file" in msg
    r = run_cli("status", "--config", str(cfg))
    assert r.returncode != 0 and "ssl_cafile" in r.stderr and "Traceback" not in r.stderr


def sasl_source(bootstrap: str, topic: str, extra: str = "") -> str:
    return kafka_source(bootstrap, topic, extra=f"""security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "SCRAM-SHA-256"
sasl_username = "ingest"
sasl_password_env = "ASOF_TEST_KAFKA_PASSWORD"
{extra}""")


def test_a_literal_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sasl_source("127.0.0.1:1", "t", f'sasl_password = "{SECRET}"'))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "sasl_password" in str(err.value) and "sasl_password_env" in str(err.value)
    assert SECRET not in str(err.value)
    # a password pasted where the variable's name belongs is not echoed either
    cfg.write_text(cfg.read_text().replace('"ASOF_TEST_KAFKA_PASSWORD"', f'"{SECRET}!"')
                   .replace(f'sasl_password = "{SECRET}"', ""))
    r = run_cli("status", "--config", str(cfg))
    assert r.returncode != 0 and "sasl_password_env" in r.stderr and SECRET not in r.stderr


def test_a_missing_password_variable_is_named(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sasl_source("127.0.0.1:1", "t"))
    config = load_config(cfg)  # loading needs no secret (status works without it)
    env = {k: v for k, v in os.environ.items() if k != "ASOF_TEST_KAFKA_PASSWORD"}
    r = subprocess.run([sys.executable, "-m", "asof_stream", "replay", "--config", str(cfg),
                        "--kafka", "t", "--from-offset", "0"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode != 0
    assert "ASOF_TEST_KAFKA_PASSWORD" in r.stderr and "not set" in r.stderr
    with pytest.raises(ConfigError, match="ASOF_TEST_KAFKA_PASSWORD"):
        KafkaSource("events", config.defs.sources["events"])  # type: ignore[arg-type]


def test_sasl_scram_is_attempted_and_the_password_is_never_printed(
        sasl_broker: tuple[str, Path], tmp_path: Path) -> None:
    bootstrap, broker_log = sasl_broker
    cfg = write_config(tmp_path, sasl_source(bootstrap, "t"))
    env = {**os.environ, "ASOF_TEST_KAFKA_PASSWORD": SECRET}
    # Tansu can hold no SCRAM user (see fixtures_kafka), so the login is refused: the
    # daemon stops with a line naming the user and the variable, never the secret.
    daemon = subprocess.run([sys.executable, "-m", "asof_stream", "--log-level", "debug",
                             "run", "--config", str(cfg)], capture_output=True, text=True,
                            env=env, timeout=120)
    out = daemon.stdout + daemon.stderr
    assert daemon.returncode != 0
    assert "SCRAM-SHA-256 login as 'ingest'" in out and "ASOF_TEST_KAFKA_PASSWORD" in out, out
    assert SECRET not in out
    replay = subprocess.run([sys.executable, "-m", "asof_stream", "replay", "--config", str(cfg),
                             "--kafka", "t", "--from-offset", "0"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert replay.returncode != 0 and "was refused" in replay.stderr, replay.stderr
    assert SECRET not in replay.stdout + replay.stderr
    assert "Traceback" not in replay.stderr
    assert SECRET not in broker_log.read_text(errors="replace")
    status = run_cli("status", "--json", "--config", str(cfg))
    assert SECRET not in status.stdout + status.stderr
