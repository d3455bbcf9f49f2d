"""The leakage report: naive last-value join vs the point-in-time join."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.ingest.commit import Committer
from asof_stream.offline.log import OfflineLog
from asof_stream.training.labels import labels_from_any
from asof_stream.training.leakage import from_future, leakage_report
from tests.join_helpers import BASE, S, commit, event, join_config, label_rows, memory_log
from tests.leakage_helpers import commit_spends_around_jan5

CFG = join_config()


def history() -> tuple[OfflineLog, Committer]:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1, s="p"),
               event("mr", BASE, merchant_id=1, r=1.5, f=True)], available_at=BASE)
    # Known only later: event time BASE + 2s, ingested at BASE + 6s.
    commit(c, [event("cs", BASE + 2 * S, customer_id="a", x=2, s="p")], available_at=BASE + 6 * S)
    return log, c


def test_counts_rows_cells_and_differences() -> None:
    log, _ = history()
    rows = label_rows([("a", 1, BASE + S),       # naive uses x=2 @ +2s: future (s same value)
                       ("a", 1, BASE + 2 * S),   # exactly at +2s: not future (future when strict)
                       ("a", 1, BASE + 4 * S),   # not future; known only at +6s (as-known-at)
                       ("b", 1, BASE - S)])      # b has nothing; merchant row is in the future
    lab = labels_from_any(rows, CFG.defs)
    rep = leakage_report(log, CFG.defs, lab, ["cs:x", "cs:s"])
    assert (rep.rows, rep.leaking_rows, rep.cells, rep.future_cells) == (4, 1, 8, 2)
    assert rep.differing_cells == 1  # x differs in row 1; s is "p" either way
    assert [(f.name, f.future_cells, f.differing_cells) for f in rep.features] == \
        [("x", 1, 1), ("s", 1, 0)]
    ex = rep.examples[0]
    assert ex.row == "labels row 1" and ex.entity == {"customer_id": "a"}
    assert ex.features[0] == {"name": "x", "pit_value": 1, "pit_time": "2026-01-01T00:00:00Z",
                              "naive_value": 2, "naive_time": "2026-01-01T00:00:02Z",
                              "future": True}
    strict = leakage_report(log, CFG.defs, lab, ["cs:x"], strict=True)
    assert strict.leaking_rows == 2
    known = leakage_report(log, CFG.defs, lab, ["cs:x"], as_known_at=True)
    assert known.leaking_rows == 3
    both = leakage_report(log, CFG.defs, lab, ["cs:x", "mr:r"], examples=1)
    assert both.leaking_rows == 2 and len(both.examples) == 1
    assert both.features[1].future_cells == 1  # the merchant row for the label at BASE - 1s


def test_from_future_rules() -> None:
    assert not from_future(None, None, 5, strict=True, as_known_at=True)
    assert from_future(6, 0, 5, strict=False, as_known_at=False)
    assert not from_future(5, 9, 5, strict=False, as_known_at=False)
    assert from_future(5, 0, 5, strict=True, as_known_at=False)
    assert from_future(4, 6, 5, strict=False, as_known_at=True)


def test_leakage_cli_text_and_json(config: Config, tmp_path: Path) -> None:
    commit_spends_around_jan5(config)
    (tmp_path / "labels.csv").write_text("customer_id,event_timestamp\nc1,2026-01-05\n"
                                         "c1,2026-01-10\n")
    args = ["leakage", "--config", str(config.path), "--labels", str(tmp_path / "labels.csv"),
            "--features", "customer_stats:spend_7d"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "label rows it fills from the future: 1 (50.00%)" in r.output
    assert "1.0 @ 2026-01-01T00:00:00Z | 9.0 @ 2026-01-09T00:00:00Z  <- from the future" in r.output
    r = CliRunner().invoke(main, [*args, "--json", "--examples", "0"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # the summary line is on stderr
    assert (out["rows"], out["leaking_rows"], out["examples"]) == (2, 1, [])
    r = CliRunner().invoke(main, [*args[:-1], "nope"])
    assert r.exit_code == 1 and "known views" in r.output
