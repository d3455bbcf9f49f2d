"""``asof-stream demo``: the whole loop on the embedded example, as a user runs it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from click.testing import CliRunner

from asof_stream.cli import main
from tests.fixtures_kafka import run_cli


def test_demo_runs_the_whole_loop_in_a_fresh_folder(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    r = run_cli("demo", "--dir", str(folder), "--customers", "40", "--days", "20")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for step in ("[1/5] ingest", "[2/5] training set", "[3/5] leakage", "[4/5] online lookup",
                 "[5/5] computed once"):
        assert step in out
    # spend_7d is computed from raw purchases: online and training-set values, side by side
    computed = out.split("[5/5]")[1].split("\n\ndone")[0]
    sides = [line.split() for line in computed.splitlines()[2:] if line.strip()]
    assert [s[0] for s in sides] == ["spend_7d", "orders_7d", "avg_basket_30d", "last_category"]
    assert all(s[-1] == "equal" and s[1] == s[2] for s in sides), computed
    assert "3 repeats skipped" in out and "2 dead letters" in out
    assert "label rows it fills from the future" in out
    assert 'id="timeline-0"' in (folder / "leakage.html").read_text(encoding="utf-8")
    # The output stays in order: the daemon's dead-letter warnings are not printed in the
    # middle of it; the demo reports the two dead letters itself, in step 1, with lines.
    assert "dead letter at" not in r.stderr, r.stderr
    step1 = out.split("[2/5]")[0]
    assert "the dead letters are lines malformed on purpose" in step1
    assert re.search(r"stream\.jsonl line \d+ \(byte \d+\): bad event_timestamp: timestamp"
                     r" 'yesterday'", step1), step1
    assert re.search(r"stream\.jsonl line \d+ \(byte \d+\): not JSON", step1), step1
    # It ends with the sentence that matters, its numbers those of the leakage report.
    future, cells = re.search(r"feature cells from the future: ([\d,]+) of ([\d,]+)",
                              out).groups()
    assert int(future.replace(",", "")) > 0
    assert out.rstrip("\n").splitlines()[-1] == (
        f"Of the {cells} feature cells a naive last-value join fills for these labels,"
        f" {future} came from the future; in asof-stream's training set (train.csv), 0 did.")
    with (folder / "train.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with (folder / "labels.csv").open(newline="") as fh:
        labels = list(csv.DictReader(fh))
    assert len(rows) == len(labels) > 0
    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in labels]
    assert any(r["spend_7d"] for r in rows)
    # The same numbers from the outside: status and the online lookup.
    st = json.loads(run_cli("status", "--json", "--config", str(folder / "asof.toml")).stdout)
    stored = sum(v["rows"] for v in st["views"].values())
    assert f"-> {stored:,} events in the log" in out
    assert st["dead_letters"] == 2
    assert "PRESENT" in out.split("[4/5]")[1]

    again = run_cli("demo", "--dir", str(folder), "--customers", "10", "--days", "5")
    assert again.returncode == 0, again.stderr  # an earlier demo's folder is replaced


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    r = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path)])
    assert r.exit_code != 0
    assert "is not an asof-stream demo folder" in r.output
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_demo_rejects_bad_flags(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "d"), "--customers", "0"])
    assert r.exit_code == 2 and "--customers" in r.output
    assert not (tmp_path / "d").exists()
