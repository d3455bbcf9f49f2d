"""Training-set sidecars: what a set was built from, and an exact rebuild from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asof_stream import FeatureStore
from asof_stream.config import Config
from tests import test_training_cli
from tests.test_training_cli import LABELS, run

project = test_training_cli.project  # the fixture: labels.csv and three events

LATER = [  # arrive after the first build; each would change the set if it were seen
    {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-04T00:00:00Z",
     "spend_7d": 99.0, "orders_7d": 9, "tier": "platinum"},
    {"view": "customer_stats", "customer_id": "c2", "event_timestamp": "2026-01-01T00:00:00Z",
     "spend_7d": 5.0, "orders_7d": 5, "tier": "silver"},
]


def build(project: Path, out: str, *extra: str) -> Path:
    r = run(project, "training-set", "--labels", str(project / "labels.csv"), "--features",
            "@churn,merchant_risk", "--out", str(project / out), *extra)
    assert r.exit_code == 0, r.output
    return project / out


def test_sidecar_records_what_the_set_was_built_from(project: Path) -> None:
    out = build(project, "train.csv", "--strict", "--full-feature-names")
    side = json.loads((project / "train.csv.json").read_text())
    assert side["labels"]["rows"] == 4 and side["labels"]["timestamp_column"] == "event_timestamp"
    assert side["labels"]["path"] == str(project / "labels.csv")
    assert len(side["labels"]["sha256"]) == 64
    assert side["features"] == ["@churn", "merchant_risk"]
    assert side["resolved"] == ["customer_stats:spend_7d", "customer_stats:tier",
                                "merchant_risk:risk", "merchant_risk:flagged"]
    assert side["flags"] == {"strict": True, "as_known_at": False, "full_feature_names": True}
    assert side["high_water_seq"] == 3
    assert set(side["views"]) == {"customer_stats", "merchant_risk"}
    assert side["views"]["customer_stats"]["definition"]["ttl"] == 14 * 86400 * 10**6
    assert side["columns"][-1] == "merchant_risk__flagged"
    assert side["output"] == str(out)


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_rebuild_is_byte_identical_after_new_rows_and_a_ttl_change(project: Path, config: Config,
                                                                   ext: str) -> None:
    first = build(project, f"train{ext}")
    original = first.read_bytes()
    with FeatureStore(config) as store:
        assert store.push(LATER).stored == 2
    toml = project / "asof.toml"
    toml.write_text(toml.read_text().replace('ttl = "14d"', 'ttl = "1d"'))
    # A fresh build now differs: it sees the new rows and the new ttl.
    assert build(project, f"fresh{ext}").read_bytes() != original

    r = run(project, "rebuild", str(project / f"train{ext}.json"), "--out",
            str(project / f"again{ext}"))
    assert r.exit_code == 0, r.output
    assert (project / f"again{ext}").read_bytes() == original
    # Without --out it writes the recorded path again, with the same bytes.
    first.unlink()
    assert run(project, "rebuild", str(project / f"train{ext}.json")).exit_code == 0
    assert first.read_bytes() == original


def test_rebuild_refuses_a_changed_label_file(project: Path) -> None:
    build(project, "train.csv")
    (project / "labels.csv").write_text(LABELS + "c9,1,2026-01-09,1\n")
    r = run(project, "rebuild", str(project / "train.csv.json"), "--out", str(project / "x.csv"))
    assert r.exit_code != 0
    assert "changed since the training set was built" in r.output
    assert not (project / "x.csv").exists()


def test_rebuild_refuses_a_shorter_log(project: Path, config: Config, tmp_path: Path) -> None:
    build(project, "train.csv")
    side = project / "train.csv.json"
    data = json.loads(side.read_text())
    data["high_water_seq"] = 1000
    side.write_text(json.dumps(data))
    r = run(project, "rebuild", str(side), "--out", str(project / "x.csv"))
    assert r.exit_code != 0 and "below the recorded high-water mark 1000" in r.output


@pytest.mark.parametrize("text, message", [
    ("not json", "not a readable JSON sidecar"),
    ('{"format": 1}', "not a training-set sidecar"),
    ('{"format": 99}', "sidecar format 99 is not supported"),
    ("[1, 2]", "not a training-set sidecar"),
])
def test_bad_sidecars_are_clear_errors(project: Path, text: str, message: str) -> None:
    side = project / "bad.json"
    side.write_text(text)
    r = run(project, "rebuild", str(side))
    assert r.exit_code != 0
    assert message in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_missing_sidecar(project: Path) -> None:
    r = run(project, "rebuild", str(project / "nope.json"))
    assert r.exit_code != 0 and "no such sidecar file" in r.output


def test_the_recorded_version_equals_the_installed_metadata() -> None:
    """The sidecar records ``asof_stream.__version__``: it must be the version pip
    installed (pyproject.toml's)."""
    from importlib.metadata import version

    import asof_stream

    assert asof_stream.__version__ == version("asof-stream")
