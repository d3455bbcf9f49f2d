"""On-demand transforms: one function, the same values in training sets and in serving,
and every failure an error that names the transform."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from asof_stream import FeatureStore
from asof_stream.cli.common import main
from asof_stream.config import Config
from asof_stream.definitions import Definitions
from asof_stream.timestamps import now_micros, to_iso
from asof_stream.transforms import RequestValueError, TransformError, apply

from .conftest import BASIC_TOML
from .fixtures_redis import SQLITE_ONLINE
from .server_helpers import running_server
from .transform_helpers import TRANSFORMS_TOML, write_modules


def _seeded(config: Config) -> Config:
    write_modules(config.root)
    now = now_micros()
    with FeatureStore(config) as store:
        assert store.push([
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": to_iso(now - 60e6),
             "spend_7d": 12.5, "orders_7d": 3, "tier": "gold"},
            {"view": "customer_stats", "customer_id": "c2", "event_timestamp": to_iso(now - 30e6),
             "spend_7d": 4.0, "orders_7d": 1},
        ]).stored == 2
    return config


@pytest.fixture
def tconfig(make_config: Callable[..., Config]) -> Config:
    return _seeded(make_config(TRANSFORMS_TOML))


@pytest.fixture(params=["sqlite", "redis"])
def any_tconfig(request: pytest.FixtureRequest, make_config: Callable[..., Config]) -> Config:
    """The transforms project over each online backend in turn."""
    if request.param == "sqlite":
        return _seeded(make_config(TRANSFORMS_TOML))
    url: str = request.getfixturevalue("redis_url")
    return _seeded(make_config(text=BASIC_TOML.replace(SQLITE_ONLINE, f'online = "{url}"')
                               + TRANSFORMS_TOML))


def cli(config: Config, *args: str) -> Result:
    return CliRunner().invoke(main, [args[0], "--config", str(config.path), *args[1:]])


def write_labels(config: Config, rows: list[tuple[str, str, str]], name: str = "labels.csv",
                 header: str = "customer_id,event_timestamp,basket") -> Path:
    path = config.root / name
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def server(tconfig: Config) -> Iterator[httpx.Client]:
    with running_server(tconfig) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def test_same_values_in_training_set_and_serving(any_tconfig: Config) -> None:
    """Zero skew: labels at "now" get exactly what the online read computes now."""
    with running_server(any_tconfig) as url, httpx.Client(base_url=url, timeout=10) as server:
        _same_values(any_tconfig, server)


def _same_values(tconfig: Config, server: httpx.Client) -> None:
    now = to_iso(now_micros())
    assert now is not None
    entities = [("c1", "3.5"), ("c2", "20"), ("c3", "1.25")]  # c3 has no row: inputs None
    labels = write_labels(tconfig, [(c, now, b) for c, b in entities])
    out = tconfig.root / "train.csv"
    r = cli(tconfig, "training-set", "--labels", str(labels), "--features", "risk",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = read_csv(out)
    # the hidden inputs (spend_7d, tier) are not written
    assert list(rows[0]) == ["customer_id", "event_timestamp", "basket", "score", "band"]
    offline = [(float(x["score"]), x["band"]) for x in rows]
    assert offline == [(28.5, "high/gold"), (28.0, "high/none"), (1.25, "low/none")]

    # Python API: request values in the entity rows (Feast) or in request_data
    with FeatureStore(tconfig) as store:
        resp = store.get_online_features(
            ["risk"], [{"customer_id": c, "basket": float(b)} for c, b in entities])
        assert list(zip(resp["score"], resp["band"], strict=True)) == offline
        assert resp.statuses["score"] == ["PRESENT"] * 3
        assert "basket" not in resp.values
        resp2 = store.get_online_features(["customer_stats:tier", "risk:score"],
                                          [{"customer_id": c} for c, _ in entities],
                                          request_data={"basket": [3.5, 20, 1.25]})
        assert resp2["score"] == [s for s, _ in offline]
        assert resp2["tier"] == ["gold", None, None]
        # the output's time is its newest input's; none when no input has a row
        assert resp2.event_timestamps["score"][2] is None
        assert resp2.event_timestamps["score"][0] == resp2.event_timestamps["tier"][0]
        frame = store.get_historical_features(
            [{"customer_id": c, "event_timestamp": now, "basket": float(b)} for c, b in entities],
            ["customer_stats:spend_7d", "risk"]).to_records()
        assert [(f["score"], f["band"]) for f in frame] == offline
        assert [f["spend_7d"] for f in frame] == [12.5, 4.0, None]

    # HTTP: request values among the entities (Feast), or in request_context
    body = {"features": ["risk:score", "risk:band"],
            "entities": {"customer_id": [c for c, _ in entities],
                         "basket": [float(b) for _, b in entities]}}
    got = server.post("/get-online-features", json=body)
    assert got.status_code == 200, got.text
    reply = got.json()
    assert reply["metadata"]["feature_names"] == ["customer_id", "score", "band"]
    served = list(zip(reply["results"][1]["values"], reply["results"][2]["values"], strict=True))
    assert served == offline
    body2 = {"features": ["risk:score"], "entities": {"customer_id": ["c1"]},
             "request_context": {"basket": [3.5]}}
    got2 = server.post("/get-online-features", json=body2)
    assert got2.status_code == 200, got2.text
    assert got2.json()["results"][1]["values"] == [28.5]

    # CLI: --request NAME=VALUE
    r = cli(tconfig, "online", "--features", "risk", "--entity", "customer_id=c1",
            "--request", "basket=3.5", "--json")
    assert r.exit_code == 0, r.output
    feats = json.loads(r.output)["features"]
    assert (feats["score"]["value"], feats["band"]["value"]) == offline[0]
    assert feats["score"]["status"] == "PRESENT"


def test_a_raising_transform_is_named_everywhere(tconfig: Config, server: httpx.Client) -> None:
    now = to_iso(now_micros())
    assert now is not None
    labels = write_labels(tconfig, [("c2", now, "1"), ("c1", now, "1")])
    r = cli(tconfig, "training-set", "--labels", str(labels), "--features", "broken",
            "--out", str(tconfig.root / "t.csv"))
    assert r.exit_code != 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert "transform 'broken'" in lines[0] and "ZeroDivisionError" in lines[0]
    assert "row 2" in lines[0]  # the label row that raises, found
    assert not (tconfig.root / "t.csv").exists()

    r = cli(tconfig, "online", "--features", "broken", "--entity", "customer_id=c1")
    assert r.exit_code != 0
    assert len(r.output.strip().splitlines()) == 1 and "transform 'broken'" in r.output
    assert "Traceback" not in r.output

    got = server.post("/get-online-features", json={
        "features": ["broken:y"], "entities": {"customer_id": ["c2", "c1"]}})
    assert got.status_code == 500
    assert "transform 'broken'" in got.json()["detail"]
    assert "entity row 1" in got.json()["detail"]

    with FeatureStore(tconfig) as store:
        with pytest.raises(TransformError, match="transform 'broken'"):
            store.get_online_features(["broken"], [{"customer_id": "c1"}])
        with pytest.raises(TransformError, match="transform 'broken'"):
            store.get_historical_features([{"customer_id": "c1", "event_timestamp": now}],
                                          ["broken"])
        # a row where it does not raise is computed
        assert store.get_online_features(["broken"], [{"customer_id": "c2"}])["y"] == [
            1.0 / (4.0 - 12.5)]


@pytest.mark.parametrize("ref, message", [
    ("badtype", r"transform 'badtype': output 'n' at (entity row 0|labels row 1): expected int64, got 'x'"),
    ("short", r"transform 'short': output 'm' has 1 value\(s\) for 2 row\(s\)"),
])
def test_a_wrong_output_names_transform_and_output(tconfig: Config, ref: str,
                                                   message: str) -> None:
    now = to_iso(now_micros())
    with FeatureStore(tconfig) as store:
        with pytest.raises(TransformError, match=message):
            store.get_online_features([ref], [{"customer_id": "c1"}, {"customer_id": "c2"}])
        with pytest.raises(TransformError, match=message):
            store.get_historical_features([{"customer_id": "c1", "event_timestamp": now},
                                           {"customer_id": "c2", "event_timestamp": now}], [ref])


def test_a_missing_or_bad_request_value_is_named(tconfig: Config, server: httpx.Client) -> None:
    now = to_iso(now_micros())
    assert now is not None
    labels = write_labels(tconfig, [("c1", now)], header="customer_id,event_timestamp")
    r = cli(tconfig, "training-set", "--labels", str(labels), "--features", "risk",
            "--out", str(tconfig.root / "t.csv"))
    assert r.exit_code != 0
    assert "missing column 'basket'" in r.output and "transform 'risk'" in r.output

    bad = write_labels(tconfig, [("c1", now, "lots")], name="bad.csv")
    r = cli(tconfig, "training-set", "--labels", str(bad), "--features", "risk",
            "--out", str(tconfig.root / "t.csv"))
    assert r.exit_code != 0
    assert "request value 'basket'" in r.output and "row 1" in r.output, r.output

    r = cli(tconfig, "online", "--features", "risk", "--entity", "customer_id=c1")
    assert r.exit_code != 0 and "basket" in r.output
    r = cli(tconfig, "online", "--features", "risk", "--entity", "customer_id=c1",
            "--request", "basket=lots")
    assert r.exit_code != 0 and "request value 'basket'" in r.output

    got = server.post("/get-online-features", json={
        "features": ["risk:score"], "entities": {"customer_id": ["c1"]}})
    assert got.status_code == 400
    assert "missing request value 'basket'" in got.json()["detail"]
    got = server.post("/get-online-features", json={
        "features": ["risk:score"], "entities": {"customer_id": ["c1"], "basket": ["lots"]}})
    assert got.status_code == 400
    assert "request value 'basket'" in got.json()["detail"]

    with FeatureStore(tconfig) as store, \
            pytest.raises(RequestValueError, match="missing request value 'basket'"):
        store.get_online_features(["risk"], [{"customer_id": "c1"}])


@pytest.mark.parametrize("ref, message", [
    ("missing_module", r"transform 'missing_module': module 'not_there' not found: no file"),
    ("bad_import", r"transform 'bad_import': module 'bad_module' .* does not import:"
                   r" ModuleNotFoundError"),
])
def test_a_module_that_does_not_import_is_named(tconfig: Config, server: httpx.Client,
                                                ref: str, message: str) -> None:
    now = to_iso(now_micros())
    with FeatureStore(tconfig) as store:
        with pytest.raises(TransformError, match=message):
            store.get_online_features([ref], [{"customer_id": "c1"}])
        with pytest.raises(TransformError, match=message):
            store.get_historical_features([{"customer_id": "c1", "event_timestamp": now}], [ref])
    r = cli(tconfig, "online", "--features", ref, "--entity", "customer_id=c1")
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert f"transform '{ref}'" in r.output
    got = server.post("/get-online-features", json={
        "features": [ref], "entities": {"customer_id": ["c1"]}})
    assert got.status_code == 500 and f"transform '{ref}'" in got.json()["detail"]


def _defs() -> Definitions:
    return Definitions.model_validate({"transforms": {"t": {
        "function": "tests.transform_functions:echo", "outputs": {
            "i": "int64", "f": "float64", "s": "string", "b": "bool"}}}})


@pytest.mark.parametrize("column, value, ok", [
    ("i", 2**63, False), ("i", -(2**63), True), ("i", 1.0, False), ("i", True, False),
    ("f", 3, True), ("f", float("nan"), False), ("f", float("inf"), False), ("f", True, False),
    ("s", 1, False), ("b", 1, False), ("b", None, True), ("s", None, True),
])
def test_output_values_are_checked_against_their_type(column: str, value: object,
                                                      ok: bool) -> None:
    defs = _defs()
    good: dict[str, list[object]] = {"i": [1], "f": [1.5], "s": ["x"], "b": [True]}
    good[column] = [value]
    if ok:
        out = apply(defs, defs.transforms["t"], {}, {"cols": [good]}, rows=1)
        assert out[column] == [float(value) if column == "f" else value]  # type: ignore[arg-type]
    else:
        with pytest.raises(TransformError, match=f"transform 't': output '{column}' at row 0"):
            apply(defs, defs.transforms["t"], {}, {"cols": [good]}, rows=1)


def test_numpy_results_and_extra_outputs() -> None:
    import numpy as np

    defs = _defs()
    good = {"i": np.array([1, 2]), "f": np.array([0.5, 1.0]), "s": ["a", "b"],
            "b": np.array([True, False])}
    out = apply(defs, defs.transforms["t"], {}, {"cols": [good, good]}, rows=2)
    assert out == {"i": [1, 2], "f": [0.5, 1.0], "s": ["a", "b"], "b": [True, False]}
    assert type(out["i"][0]) is int
    with pytest.raises(TransformError, match=r"extra output\(s\) \['zz'\]"):
        apply(defs, defs.transforms["t"], {}, {"cols": [{**good, "zz": [1, 2]}] * 2}, rows=2)
    with pytest.raises(TransformError, match=r"missing output\(s\) \['s'\]"):
        apply(defs, defs.transforms["t"], {}, {"cols": [{k: v for k, v in good.items()
                                                          if k != "s"}] * 2}, rows=2)


def test_sidecar_records_the_transform_and_rebuild_sees_a_changed_module(
        tconfig: Config) -> None:
    now = to_iso(now_micros())
    assert now is not None
    labels = write_labels(tconfig, [("c1", now, "3.5"), ("c2", now, "1")])
    out = tconfig.root / "train.csv"
    r = cli(tconfig, "training-set", "--labels", str(labels), "--features",
            "customer_stats:orders_7d,risk:score", "--out", str(out))
    assert r.exit_code == 0, r.output
    first = out.read_bytes()
    side = json.loads((tconfig.root / "train.csv.json").read_text())
    module = tconfig.root / "my_features.py"
    rec = side["transforms"]["risk"]
    assert rec["definition"]["function"] == "my_features:risk"
    assert rec["definition"]["request"] == {"basket": "float64"}
    assert rec["module_sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
    assert sorted(side["views"]) == ["customer_stats"]  # the transform's inputs' view
    assert side["resolved"] == ["customer_stats:orders_7d", "risk:score"]

    r = cli(tconfig, "rebuild", str(tconfig.root / "train.csv.json"))
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == first

    module.write_text(module.read_text().replace("(spend or 0.0) * 2", "(spend or 0.0) * 3"))
    r = cli(tconfig, "rebuild", str(tconfig.root / "train.csv.json"))
    assert r.exit_code != 0
    assert "transform 'risk': module 'my_features' changed" in r.output
    assert "--allow-partial" in r.output
    assert out.read_bytes() == first
    r = cli(tconfig, "rebuild", str(tconfig.root / "train.csv.json"), "--allow-partial")
    assert r.exit_code == 0, r.output
    assert "warning: partial rebuild: transform 'risk'" in r.output
    assert read_csv(out)[0]["score"] == str(12.5 * 3 + 3.5)  # the changed function ran


def test_the_registry_lists_transforms(tconfig: Config) -> None:
    from asof_stream.monitoring.registry import list_features

    entries = list_features(tconfig, view="risk")
    assert [e["ref"] for e in entries] == ["risk:score", "risk:band"]
    e = entries[0]
    assert (e["kind"], e["function"], e["type"]) == ("transform", "my_features:risk", "float64")
    assert e["inputs"] == ["customer_stats:spend_7d", "customer_stats:tier"]
    assert e["request"] == {"basket": "float64"}
    assert e["outputs"] == {"score": "float64", "band": "string"}
    assert e["join_keys"] == ["customer_id"] and e["module_sha256"]
    assert {x["view"] for x in list_features(tconfig)} >= {"customer_stats", "risk", "broken"}
    r = cli(tconfig, "features", "--view", "risk")
    assert r.exit_code == 0, r.output
    assert "risk  (transform my_features:risk" in r.output
    assert "inputs customer_stats:spend_7d, customer_stats:tier  request basket float64" \
        in r.output
    assert "score" in r.output and "band" in r.output


def test_dataframe_labels_and_every_output_format(tconfig: Config) -> None:
    import pandas as pd

    now = to_iso(now_micros())
    frame = pd.DataFrame({"customer_id": ["c1", "c2"], "event_timestamp": [now, now],
                          "basket": [3.5, float("nan")]})  # NaN: pandas' missing value
    with FeatureStore(tconfig) as store:
        ts = store.get_historical_features(frame, ["risk"])
    df = ts.to_pandas()
    assert list(df["score"]) == [28.5, 8.0] and list(df["band"]) == ["high/gold", "low/none"]
    assert str(df["score"].dtype) == "float64"
    ts.write(tconfig.root / "t.jsonl")
    lines = [json.loads(x) for x in (tconfig.root / "t.jsonl").read_text().splitlines()]
    assert [(x["score"], x["band"]) for x in lines] == [(28.5, "high/gold"), (8.0, "low/none")]
    import pyarrow.parquet as pq

    ts.write(tconfig.root / "t.parquet")
    table = pq.read_table(tconfig.root / "t.parquet")
    assert table.column("score").to_pylist() == [28.5, 8.0]
    assert str(table.schema.field("band").type) == "string"


def test_two_projects_with_one_module_name_do_not_mix(tmp_path: Path) -> None:
    import sys

    from asof_stream.config import parse_config

    toml = BASIC_TOML + """
[transforms.k]
function = "feats:k"
outputs = { v = "int64" }
"""
    path_before = list(sys.path)
    values = []
    for n in (1, 2):
        root = tmp_path / f"p{n}"
        root.mkdir()
        (root / "asof.toml").write_text(toml)
        (root / "feats.py").write_text(
            "import helper\n\ndef k(cols):\n    return {'v': [helper.N] * len(cols['x'])}\n")
        (root / "helper.py").write_text(f"N = {n}\n")  # a helper beside it, imported at load
        defs = parse_config(toml, root / "asof.toml").defs
        values.append(apply(defs, defs.transforms["k"], {}, {"x": [0, 0]})["v"])
        sys.modules.pop("helper", None)  # a helper is a plain import, cached by its name
    assert values == [[1, 1], [2, 2]]
    assert sys.path == path_before
    assert "feats" not in sys.modules
