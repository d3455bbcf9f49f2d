"""``replay`` seals as it goes, like the daemon: a backfill past ``seal_rows`` starts the
sealer child and, when it ends, leaves every view's head below ``seal_rows``, each row in
exactly one tier; a small backfill, or sealing turned off, leaves the rows in the head."""

from __future__ import annotations

from pathlib import Path

import pytest

from asof_stream.config import load_config
from asof_stream.ingest.replay_file import replay_files
from asof_stream.offline.log import open_log
from asof_stream.offline.manifest import list_segments
from tests.fixtures_kafka import event, run_cli, write_config
from tests.test_sealer_process import assert_each_row_once, tiers

SEALING = "\n[log]\nseal_rows = {rows}\nseal_interval = 0.05\nmerge_fanout = 3\n"


def project(root: Path, n: int, seal_rows: int) -> tuple[Path, Path]:
    config = write_config(root, "", batch_size=100, batch_timeout_ms=20,
                          extra=SEALING.format(rows=seal_rows))
    events = root / "backfill.jsonl"
    events.write_bytes(b"".join(event(i, event_id=f"e{i}") + b"\n" for i in range(n)))
    return config, events


def test_a_large_replay_seals_and_leaves_the_head_below_seal_rows(tmp_path: Path) -> None:
    config, events = project(tmp_path, 3000, 200)
    out = run_cli("replay", str(events), "--view", "customer_stats", "--batch-size", "100",
                  "--config", str(config))
    assert out.returncode == 0, out.stderr
    head, sealed = tiers(tmp_path)
    assert head + sealed == 3000
    assert head < 200 and sealed >= 2800
    assert_each_row_once(config, 3000)


def test_replay_again_after_a_sealed_backfill_stores_nothing_twice(tmp_path: Path) -> None:
    config, events = project(tmp_path, 1000, 100)
    cfg = load_config(config)
    first = replay_files(cfg, [events], view="customer_stats", batch_size=50)
    again = replay_files(cfg, [events], view="customer_stats", batch_size=50,
                         from_start=True)
    assert first.stored == 1000 and (again.stored, again.duplicates) == (0, 1000)
    assert sum(tiers(tmp_path)) == 1000
    assert_each_row_once(config, 1000)


@pytest.mark.parametrize("seal_rows", [0, 5000])
def test_sealing_off_or_a_small_replay_leaves_the_rows_in_the_head(
        tmp_path: Path, seal_rows: int) -> None:
    config, events = project(tmp_path, 500, seal_rows)
    total = replay_files(load_config(config), [events], view="customer_stats", batch_size=100)
    assert total.stored == 500
    assert tiers(tmp_path) == (500, 0)
    with open_log(load_config(config).offline_path) as log:
        assert list_segments(log.conn) == []
