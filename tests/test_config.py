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
    ('[store]', '[store]\nbogus = 1', "store.bogus: unknown key (valid keys: offline, online, shards)"),
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
    with pytest.raises(ConfigError, match="ASOF_INGEST__BATCH_SIZE=lots: "):
        make_config()


def test_a_bad_override_names_the_variable_not_the_file(make_config: Callable[..., Config],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("ASOF_VIEWS__CUSTOMER_STATS__TTL", "14")
    with pytest.raises(ConfigError) as err:
        make_config()
    text = str(err.value)
    assert text.startswith("ASOF_VIEWS__CUSTOMER_STATS__TTL=14: expected a duration like '14d'")
    assert "asof.toml" not in text
    # A secret in an overriding URL is not echoed.
    monkeypatch.delenv("ASOF_VIEWS__CUSTOMER_STATS__TTL")
    monkeypatch.setenv("ASOF_STORE__ONLINE", "mysql://u:hunter2@db")
    with pytest.raises(ConfigError) as err:
        make_config()
    assert str(err.value).startswith("ASOF_STORE__ONLINE=mysql://u:***@db: online must be")
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ('"integer"', "views.customer_stats.features.orders_7d: got 'integer'; valid types:"
                  " 'int64', 'float64', 'string' or 'bool'"),
    ('{ dtype = "integer" }', "views.customer_stats.features.orders_7d.dtype: got 'integer';"
                              " valid types: 'int64'"),
])
def test_a_bad_feature_type_names_the_feature_and_the_value(make_config: Callable[..., Config],
                                                            spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(text=BASIC_TOML.replace('orders_7d = "int64"', f"orders_7d = {spec}"))
    assert message in str(err.value)
    assert "features.1" not in str(err.value)


MISSPELT = [
    ("[store]", "[store]\nonlne = 1", "store.onlne: unknown key; did you mean 'online'?"),
    ('ttl = "14d"', 'tll = "14d"', "views.customer_stats.tll: unknown key; did you mean 'ttl'?"),
    ('customer_id = "string" }', 'customer_id = "string" }\ndescriptoin = "x"',
     "entities.customer.descriptoin: unknown key; did you mean 'description'?"),
    ('features = ["customer_stats:spend_7d"', 'featres = ["customer_stats:spend_7d"',
     "services.churn.featres: unknown key; did you mean 'features'?"),
    ("orders_7d = \"int64\"", "orders_7d = { dtyp = \"int64\" }",
     "views.customer_stats.features.orders_7d.dtyp: unknown key; did you mean 'dtype'?"),
    ("", "[ingest]\nbatch_sise = 1", "ingest.batch_sise: unknown key; did you mean 'batch_size'?"),
    ("", "[log]\nseal_row = 1", "log.seal_row: unknown key; did you mean 'seal_rows'?"),
    ("", "[server]\nprot = 1", "server.prot: unknown key; did you mean 'port'?"),
    ("", "[severs]\nport = 1", "severs: unknown key; did you mean 'server'?"),
    ("", "[sources.f]\nkind = 'file'\npath = 'x'\npoll_intervl = 1",
     "sources.f.poll_intervl: unknown key; did you mean 'poll_interval'?"),
    ("", "[sources.k]\nkind = 'kafka'\nbootstrap = 'h:1'\ntopic = 'a'",
     "sources.k.topic: unknown key; did you mean 'topics'?"),
    ("", "[aggregations.a]\nsource = 'customer_stats'\nfeatures = {}\nownr = 'x'",
     "aggregations.a.ownr: unknown key; did you mean 'owner'?"),
    ("", "[transforms.t]\nfunction = 'm:f'\noutputs = { y = 'float64' }\ninput = []",
     "transforms.t.input: unknown key; did you mean 'inputs'?"),
]


@pytest.mark.parametrize("old, new, message", MISSPELT)
def test_a_misspelt_key_suggests_the_right_one(make_config: Callable[..., Config], old: str,
                                               new: str, message: str) -> None:
    text = BASIC_TOML.replace(old, new, 1) if old else BASIC_TOML + "\n" + new + "\n"
    assert text != BASIC_TOML
    with pytest.raises(ConfigError) as err:
        make_config(text=text)
    assert message in str(err.value)


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
