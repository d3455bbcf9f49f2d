"""Files a user cares about: labels are never replaced by an output, ``init`` never
overwrites, label files that are not UTF-8 are named, names are whole-string checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asof_stream import FeatureStore
from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.training.labels import LabelError, read_labels
from tests.cli_helpers import push_project, run
from tests.test_training_cli import EVENTS, LABELS


@pytest.fixture
def project(config: Config) -> Path:
    return push_project(config, EVENTS, LABELS)


def training_set(project: Path, labels: Path, out: Path) -> Result:
    return run(project, "training-set", "--labels", str(labels), "--features", "customer_stats",
               "--out", str(out))


@pytest.mark.parametrize("how", ["same path", "other spelling", "symlink", "hardlink"])
def test_out_that_is_the_labels_is_refused(project: Path, how: str) -> None:
    labels = project / "labels.csv"
    out = {"same path": labels, "other spelling": project / "." / "x" / ".." / "labels.csv",
           "symlink": project / "link.csv", "hardlink": project / "hard.csv"}[how]
    (project / "x").mkdir()
    if how == "symlink":
        out.symlink_to(labels)
    elif how == "hardlink":
        os.link(labels, out)
    r = training_set(project, labels, out)
    assert r.exit_code != 0
    assert "is the label file" in r.output and "choose another --out" in r.output, r.output
    assert labels.read_text() == LABELS
    assert not Path(f"{out}.json").exists()


def test_sidecar_that_is_the_labels_is_refused(project: Path) -> None:
    """``--out x.jsonl`` writes ``x.jsonl.json``: a label file by that name is refused too."""
    labels = project / "t.jsonl.json.csv"
    labels.write_text(LABELS)
    link = project / "t.jsonl.json"
    link.symlink_to(labels)
    r = training_set(project, labels, project / "t.jsonl")
    assert r.exit_code != 0 and "the sidecar" in r.output, r.output
    assert labels.read_text() == LABELS


def test_python_api_write_refuses_the_label_file(project: Path, config: Config) -> None:
    labels = project / "labels.csv"
    with FeatureStore(config) as store:
        ts = store.get_historical_features(str(labels), ["customer_stats:tier"])
    with pytest.raises(ValueError, match="is the label file"):
        ts.write(labels)
    assert labels.read_text() == LABELS


def test_init_never_overwrites_user_files(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("mine\n")
    (tmp_path / "events").mkdir()
    sample = tmp_path / "events" / "sample.jsonl"
    sample.write_text("{}\n")
    r = subprocess.run([sys.executable, "-m", "asof_stream", "init", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert str(labels) in r.stderr and str(sample) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert labels.read_text() == "mine\n" and sample.read_text() == "{}\n"
    assert not (tmp_path / "asof.toml").exists()  # nothing written


def test_init_force_replaces_only_the_config(tmp_path: Path) -> None:
    (tmp_path / "asof.toml").write_text("# old\n")
    (tmp_path / "labels.csv").write_text("mine\n")
    r = CliRunner().invoke(main, ["init", str(tmp_path), "--force"])
    assert r.exit_code != 0 and "labels.csv" in r.output and "asof.toml" not in r.output
    assert (tmp_path / "asof.toml").read_text() == "# old\n"
    (tmp_path / "labels.csv").unlink()
    r = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert r.exit_code != 0 and "use --force" in r.output
    r = CliRunner().invoke(main, ["init", str(tmp_path), "--force"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "asof.toml").read_text() != "# old\n"


@pytest.mark.parametrize("ext", [".csv", ".jsonl"])
def test_label_file_not_utf8_names_file_and_offset(config: Config, tmp_path: Path,
                                                   ext: str) -> None:
    good = (LABELS if ext == ".csv" else
            '{"customer_id": "c1", "event_timestamp": "2026-01-02T00:00:00Z"}\n').encode()
    path = tmp_path / f"latin1{ext}"
    path.write_bytes(good + "caf\u00e9".encode("latin-1") + b"\n")
    with pytest.raises(LabelError) as exc:
        read_labels(path, config.defs)
    msg = str(exc.value)
    line = good.count(b"\n") + 1
    assert str(path) in msg and f"offset {len(good) + 3}" in msg and f"line {line}" in msg, msg
    assert "0xe9" in msg


@pytest.mark.parametrize("what,toml", [
    ("view", '[views."v\\n"]\nentity = "customer"\nfeatures = { x = "int64" }\n'),
    ("feature", '[views.v]\nentity = "customer"\nfeatures = { "x\\n" = "int64" }\n'),
    ("join key", '[entities.e]\njoin_keys = { "k\\n" = "string" }\n'),
])
def test_names_ending_in_a_newline_are_refused(make_config: object, what: str, toml: str) -> None:
    from asof_stream.config import ConfigError

    with pytest.raises(ConfigError, match=f"{what} name"):
        make_config(toml)  # type: ignore[operator]
