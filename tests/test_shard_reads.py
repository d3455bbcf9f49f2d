"""Read-only audits over partition shards (leakage, skew, drift over a window) give what
the same command gives on one flat log holding the same events (docs/scaling.md)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.offline.shards import existing_shards
from asof_stream.timestamps import to_iso
from tests.fixtures_kafka import event
from tests.shard_builders import commit_both, twin_projects


def run(config: Config, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, [*args, "--config", str(config.path)])
    return r.exit_code, r.output


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
