from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config, ConfigError, load_config, parse_config
from tests.conftest import BASIC_TOML


def test_relative_paths_are_relative_to_the_config_folder(config: Config, tmp_path: Path) -> None:
    assert config.offline_path == tmp_path / "data" / "offline.sqlite"
    assert config.online_url == f"sqlite:///{tmp_path}/data/online.sqlite"


def test_refs_resolve_views_features_and_services(config: Config) -> None:
    d = config.defs
    assert d.resolve_refs(["@churn"]) == [("customer_stats", "spend_7d"), ("customer_stats", "tier")]
    assert d.resolve_refs(["merchant_risk"]) == [("merchant_risk", "risk"), ("merchant_risk", "flagged")]
    assert d.resolve_refs(["customer_stats:tier", "@churn"]) == [
        ("customer_stats", "tier"), ("customer_stats", "spend_7d")]


@pytest.mark.parametrize("ref, listed", [
    ("customer_stats:nope", "customer_stats:spend_7d"),
    ("nope:x", "customer_stats, merchant_risk"),
    ("@nope", "@churn"),
])
def test_unknown_refs_list_the_valid_ones(config: Config, ref: str, listed: str) -> None:
    with pytest.raises(ValueError, match=listed):
        config.defs.resolve_refs([ref])


BAD = [
    ('ttl = "14d"', 'ttl = "two weeks"', "views.customer_stats.ttl"),
    ('entity = "customer"', 'entity = "client"', "views.customer_stats.entity: unknown entity 'client'"),
    ('spend_7d = "float64"', 'spend_7d = "double"', "views.customer_stats.features"),
    ('customer_id = "string"', 'customer_id = "uuid"', "entities.customer.join_keys.customer_id"),
    ('"customer_stats:tier"', '"customer_stats:nope"', "services.churn.features"),
    ('online = "sqlite:///data/online.sqlite"', 'online = "mysql://x"', "store.online"),
    ('[store]', '[store]\nbogus = 1', "store.bogus: Extra inputs are not permitted"),
    ('features = { risk', 'features = { event_timestamp = "int64", risk', "reserved"),
    ('features = { risk', 'features = { merchant_id = "int64", risk', "also join keys"),
]


@pytest.mark.parametrize("old, new, message", BAD)
def test_bad_config_names_file_field_and_problem(tmp_path: Path, old: str, new: str,
                                                 message: str) -> None:
    assert old in BASIC_TOML
    path = tmp_path / "asof.toml"
    path.write_text(BASIC_TOML.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_bad_sources(make_config: Callable[..., Config]) -> None:
    for extra, message in [
        ('[sources.k]\nkind = "kafka"\ntopics = ["t"]\n', "sources.k.bootstrap: Field required"),
        ('[sources.k]\nkind = "ftp"\n', "sources.k"),
        ('[sources.f]\nkind = "file"\npath = "x"\nview = "nope"\n', "sources.f.view: unknown view"),
        ('[sources.k]\nkind = "kafka"\nbootstrap = "b"\ntopics = []\n', "at least one topic"),
    ]:
        with pytest.raises(ConfigError, match=message):
            make_config(extra)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[store\n", tmp_path / "asof.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_environment_overrides_the_file(make_config: Callable[..., Config],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASOF_STORE__ONLINE", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("ASOF_INGEST__BATCH_SIZE", "123")
    cfg = make_config()
    assert cfg.defs.store.online == "redis://127.0.0.1:6379/3"
    assert cfg.defs.ingest.batch_size == 123
    monkeypatch.setenv("ASOF_INGEST__BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="ingest.batch_size"):
        make_config()


def test_validate_command(tmp_path: Path) -> None:
    (tmp_path / "asof.toml").write_text(BASIC_TOML)
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", "--config", str(tmp_path / "asof.toml")])
    assert ok.exit_code == 0, ok.output
    assert "2 views" in ok.output
    (tmp_path / "bad.toml").write_text(BASIC_TOML.replace('ttl = "14d"', 'ttl = 14'))
    bad = runner.invoke(main, ["validate", "--config", str(tmp_path / "bad.toml")])
    assert bad.exit_code != 0
    assert "bad.toml" in bad.output and "views.customer_stats.ttl" in bad.output
    assert not (tmp_path / "data").exists()  # nothing written before the config is valid
