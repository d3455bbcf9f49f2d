"""The join in several processes (``jobs``) gives exactly the one-process join."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.events import EventDecoder
from asof_stream.ingest.commit import Committer
from asof_stream.offline.log import OfflineLog
from asof_stream.training.asof import asof_join
from asof_stream.training.join import JoinMode
from asof_stream.training.labels import labels_from_any
from asof_stream.training.parallel_join import auto_jobs, split
from asof_stream.training.training_set import build_training_set
from tests.join_helpers import BASE, JOIN_TOML, S, commit, event, join_config, label_rows
from tests.oracles_log import oracle_view

CUSTOMERS = [f"c{i}" for i in range(40)] + ['é,"x']
VIEWS = ("cs", "cm", "mr", "pr")


def random_events(rng: random.Random, n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for _ in range(n):
        ts = BASE + rng.randrange(60) * S + rng.choice([0, 0, 1, -1])
        c, m = rng.choice(CUSTOMERS), rng.randrange(-3, 8)
        view = rng.choice(VIEWS)
        if view == "cs":
            out.append(event(view, ts, customer_id=c, x=rng.randrange(9), s=rng.choice("pq")))
        elif view == "cm":
            out.append(event(view, ts, customer_id=c, y=rng.randrange(9), x=rng.random()))
        elif view == "mr":
            out.append(event(view, ts, merchant_id=m, r=rng.random(), f=rng.random() < 0.5))
        else:
            out.append(event(view, ts, customer_id=c, merchant_id=m, z=rng.randrange(9)))
    return out


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, int, int]]]:
    """A log file with a few thousand rows in several batches, and labels for it."""
    root = tmp_path_factory.mktemp("pool")
    config = join_config(root)
    rng = random.Random(5)
    (root / "data").mkdir()
    (root / "asof.toml").write_text(JOIN_TOML)
    with OfflineLog(root / "data" / "offline.sqlite") as log:
        committer = Committer(log, None, EventDecoder(config.defs))
        for b in range(4):
            commit(committer, random_events(rng, 800), available_at=BASE + b * 20 * S)
    labels = [(rng.choice(CUSTOMERS + ["nobody"]), rng.randrange(-3, 9),
               BASE + rng.randrange(-2, 64) * S + rng.choice([0, 1, -1])) for _ in range(1500)]
    return root, labels


@pytest.mark.parametrize("mode", [JoinMode(), JoinMode(True, False), JoinMode(False, True),
                                  JoinMode(True, True)])
def test_parts_in_processes_equal_one_process(filled: tuple[Path, list[tuple[str, int, int]]],
                                              mode: JoinMode) -> None:
    root, rows = filled
    config = join_config(root)
    lab = labels_from_any(label_rows(rows), config.defs)
    keys = {v: lab.entity_keys(v) for v in VIEWS}
    with OfflineLog(root / "data" / "offline.sqlite", readonly=True) as log:
        upto = log.max_seq() - 100  # a bound below the end is kept by every worker
        one = asof_join(log, config.defs, keys, lab.times, mode, upto_seq=upto)
        for jobs in (2, 3):
            done: list[int] = []
            many = asof_join(log, config.defs, keys, lab.times, mode, done.append,
                             upto_seq=upto, jobs=jobs)
            assert sum(done) == len(rows) * len(VIEWS)  # progress counts every label once
            for v in VIEWS:
                assert many[v].seqs == one[v].seqs, (v, jobs)
                assert many[v].event_ts == one[v].event_ts, (v, jobs)
                assert many[v].values == one[v].values, (v, jobs)
                assert many[v].by_seq == one[v].by_seq, (v, jobs)
        assert all(any(s is not None for s in one[v].seqs) for v in VIEWS)


def test_with_every_row_it_is_the_oracle(filled: tuple[Path, list[tuple[str, int, int]]]) -> None:
    root, rows = filled
    config = join_config(root)
    lab = labels_from_any(label_rows(rows), config.defs)
    with OfflineLog(root / "data" / "offline.sqlite", readonly=True) as log:
        ts = build_training_set(log, config.defs, lab, ["cs", "mr:r", "pr"], jobs=2)
        for view, feature in ts.pairs:
            want = oracle_view(log, config.defs, view, lab.entity_keys(view), lab.times)
            assert ts.matches[view].column(feature) == want.column(feature)


def test_split_cuts_entity_order_into_runs_and_keeps_every_label() -> None:
    keys = [f"k{i % 97:02d}" for i in range(5000)]
    parts = split(keys, 3)
    assert [len(p) for p in parts] == [1667, 1667, 1666]
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(5000))
    assert [keys[i] for i in flat] == sorted(keys)
    assert split([], 3) == [] and split(["a"], 4) == [[0]]
    assert auto_jobs(10) == 1


def test_memory_log_is_joined_in_this_process() -> None:
    config = join_config()
    with OfflineLog(":memory:") as log:
        committer = Committer(log, None, EventDecoder(config.defs))
        commit(committer, [event("cs", BASE, customer_id="a", x=1, s="p")])
        lab = labels_from_any(label_rows([("a", 1, BASE + S)]), config.defs)
        got = asof_join(log, config.defs, {"cs": lab.entity_keys("cs")}, lab.times, jobs=2)
        assert got["cs"].column("x") == [1]


def test_uncommitted_rows_are_joined_in_this_process(tmp_path: Path) -> None:
    """Inside a transaction the workers could not see its rows: one process joins."""
    config = join_config(tmp_path)
    names = [f"e{i}" for i in range(12)]
    with OfflineLog(tmp_path / "offline.sqlite") as log:
        committer = Committer(log, None, EventDecoder(config.defs))
        commit(committer, [event("cs", BASE, customer_id=n, x=1, s="p") for n in names])
        log.conn.execute("BEGIN")
        log.conn.executemany(
            "INSERT INTO log (view, entity, event_timestamp, ingest_ts, source, features)"
            " VALUES ('cs', ?, ?, ?, 't', '{\"x\":2,\"s\":\"p\"}')",
            [(n, BASE + 1, BASE + 1) for n in names])
        lab = labels_from_any(label_rows([(n, 1, BASE + S) for n in names]), config.defs)
        got = asof_join(log, config.defs, {"cs": lab.entity_keys("cs")}, lab.times, jobs=2)
        assert log.conn.in_transaction
        assert got["cs"].column("x") == [2] * len(names)
        log.conn.execute("ROLLBACK")


def test_cli_jobs_output_is_the_same_file(filled: tuple[Path, list[tuple[str, int, int]]]
                                          ) -> None:
    root, rows = filled
    with (root / "labels.csv").open("w") as fh:
        fh.write("customer_id,merchant_id,event_timestamp\n")
        fh.writelines(f"{c},{m},{t}\n" for c, m, t in
                      ((c.replace(",", ""), m, t / S) for c, m, t in rows))
    outs = []
    for jobs in (["--jobs", "1"], ["--jobs", "2"], []):
        out = root / f"out{len(outs)}.csv"
        result = CliRunner().invoke(main, [
            "training-set", "--config", str(root / "asof.toml"), "--labels",
            str(root / "labels.csv"), "--features", "cs,cm:x,mr,pr", "--full-feature-names",
            "--out", str(out), *jobs])
        assert result.exit_code == 0, result.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert outs[0].count(b"\n") == len(rows) + 1
    bad = CliRunner().invoke(main, ["training-set", "--config", str(root / "asof.toml"),
                                    "--labels", str(root / "labels.csv"), "--features", "cs",
                                    "--out", str(root / "x.csv"), "--jobs", "0"])
    assert bad.exit_code == 2 and "--jobs" in bad.output and not (root / "x.csv").exists()
