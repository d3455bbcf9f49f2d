"""Read-only audits over partition shards (leakage, skew, drift over a window) give what
the same command gives on one flat log holding the same events (docs/scaling.md)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.offline.shards import existing_shards
from asof_stream.online import open_online
from asof_stream.online.base import OnlineRow
from asof_stream.timestamps import to_iso
from tests.fixtures_kafka import event
from tests.shard_builders import commit_both, twin_projects


def run(config: Config, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, [*args, "--config", str(config.path)])
    return r.exit_code, r.stdout


def _labels(path: Path, n: int = 60) -> Path:
    """Label rows for 24 customers (4 never seen) at times across the events' span."""
    lines = ["customer_id,event_timestamp"]
    for i in range(n):
        lines.append(f"c{i % 24},{to_iso((1_767_600_000 + (i * 2311) % 5200) * 1_000_000)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_leakage_over_shards_matches_one_log(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    commit_both(sharded, flat, [event(i, keys=20) for i in range(300)])
    assert len(existing_shards(sharded)) == 3
    labels = _labels(tmp_path / "labels.csv")
    for extra in ((), ("--strict",), ("--examples", "3")):
        args = ("leakage", "--labels", str(labels), "--features", "customer_stats",
                "--json", "--no-html", *extra)
        code_s, out_s = run(sharded, *args)
        code_f, out_f = run(flat, *args)
        assert code_s == 0, out_s
        assert code_f == 0, out_f
        report = json.loads(out_s.splitlines()[0])
        assert report == json.loads(out_f.splitlines()[0])
        assert report["leaking_rows"] > 0 and report["examples"]


def _tamper(config: Config) -> None:
    """A fabricated newer row for c2 and a row for a customer the log never saw."""
    online = open_online(config.online_url)
    try:
        high = online.applied_seq()
        far = (1_767_600_000 + 10**6) * 1_000_000
        text = json.dumps({"spend_7d": 0.0, "orders_7d": None, "tier": "x"})
        online.apply([OnlineRow("customer_stats", "c2", far, 10**9, 10**15, text),
                      OnlineRow("customer_stats", "ghost", far, 1, 10**15, text)], high)
    finally:
        online.close()


def test_skew_over_shards_matches_one_log(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    commit_both(sharded, flat, [event(i, keys=20) for i in range(300)])
    honest = [run(c, "skew", "--json") for c in (sharded, flat)]
    assert [code for code, _ in honest] == [0, 0], honest
    checked = [json.loads(out)["checked"] for _, out in honest]
    assert checked[0] == checked[1] == {"customer_stats": 20}
    for config in (sharded, flat):
        _tamper(config)
    found = []
    for config in (sharded, flat):
        code, out = run(config, "skew", "--json")
        assert code == 1, out
        report = json.loads(out)
        found.append((report["checked"], report["by_kind"],
                      sorted((d["view"], d["entity"], d["kind"]) for d in report["differences"])))
    assert found[0] == found[1]
    assert found[0][2] == [("customer_stats", "c2", "different_row"),
                           ("customer_stats", "ghost", "missing_in_log")]


def test_drift_window_over_shards_matches_one_log(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    commit_both(sharded, flat, [event(i, keys=20) for i in range(300)])
    ref = tmp_path / "reference.csv"
    ref.write_text("spend_7d,orders_7d,tier\n" + "".join(
        f"{i / 3},{i * 2},{'gold' if i % 3 else 'silver'}\n" for i in range(80)), encoding="utf-8")
    window = "window:" + to_iso((1_767_600_000 + 1000) * 1_000_000) + ".." + \
        to_iso((1_767_600_000 + 4000) * 1_000_000)
    reports = []
    for config in (sharded, flat):
        code, out = run(config, "drift", "--reference", str(ref), "--current", window,
                        "--features", "customer_stats", "--out", str(config.root / "drift"),
                        "--json")
        assert code == 0, out
        reports.append(json.loads(out))
    assert reports[0]["features"] == reports[1]["features"]
    assert reports[0]["flagged"] == reports[1]["flagged"]
    counts = {r["feature"]: r["current_count"] for r in reports[0]["features"]}
    assert 0 < counts["customer_stats:orders_7d"] < 300
