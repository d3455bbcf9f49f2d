"""Errors speak the caller's language: keyword arguments in the Python API, flags in the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asof_stream import FeatureStore
from asof_stream.config import Config
from tests.test_cli_core import run

OTHER = '[views.other]\nentity = "customer"\nfeatures = { tier = "string" }\n'
ROWS = [{"customer_id": "c1", "at": "2026-01-03T00:00:00Z"}]


def _message(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ValueError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def test_the_api_names_keyword_arguments(make_config: Any) -> None:
    cfg = make_config(OTHER)
    with FeatureStore(cfg) as store:
        msg = _message(store.get_historical_features, ROWS, ["customer_stats:tier"])
        assert "missing timestamp column 'event_timestamp'" in msg
        assert "timestamp_column=" in msg and "--" not in msg
        for fn, args in [(store.get_online_features, (["customer_stats:tier", "other"],
                                                      [{"customer_id": "c1"}])),
                         (store.lookup, (["customer_stats:tier", "other"], {"customer_id": "c1"})),
                         (store.get_historical_features, ([{**ROWS[0], "event_timestamp": 1}],
                                                          ["customer_stats:tier", "other"]))]:
            msg = _message(fn, *args)
            assert "full_feature_names=True" in msg and "--" not in msg, msg


def test_the_cli_names_flags(config: Config) -> None:
    root: Path = config.root
    (root / "asof.toml").write_text((root / "asof.toml").read_text() + OTHER)
    (root / "labels.csv").write_text("customer_id,at\nc1,2026-01-03T00:00:00Z\n")
    r = run("training-set", "--labels", "labels.csv", "--features", "customer_stats:tier",
            "--out", "out.csv", cwd=root)
    assert r.returncode == 1 and "--timestamp-column" in r.stderr, r.stderr
    assert "timestamp_column" not in r.stderr and r.stderr.count("\n") == 1
    r = run("online", "--features", "customer_stats:tier,other", "--entity", "customer_id=c1",
            cwd=root)
    assert r.returncode == 1 and "use --full-feature-names to get" in r.stderr, r.stderr
    assert "full_feature_names" not in r.stderr and r.stderr.count("\n") == 1
