"""The command line from the user's side: closed pipes, stores that are down, summaries."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BASIC_TOML
from tests.fixtures_redis import PrivateRedis
from tests.test_cli_core import project, run  # noqa: F401 -- the fixture

ENV = {**os.environ, "TZ": "Asia/Kolkata"}


@pytest.mark.parametrize("args", [["features"], ["features", "--json"], ["validate"],
                                  ["status"], ["dead-letters"], ["freshness"]])
def test_a_closed_pipe_ends_quietly(project: Path, args: list[str]) -> None:  # noqa: F811
    """``asof-stream features | head -1``: the reader is gone before we write."""
    assert run("replay", "events.jsonl", cwd=project).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "asof_stream", *args], cwd=project, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does once it has its line
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 141, err
    assert err == ""


def test_redis_down_is_one_line(tmp_path: Path) -> None:
    """Redis killed under a working project: every command says so in one line, the
    password masked."""
    server = PrivateRedis(tmp_path / "redis", ("--requirepass", "sekrit"))
    server.start()
    try:
        url = server.url.replace("://", "://:sekrit@", 1)
        (tmp_path / "asof.toml").write_text(BASIC_TOML.replace("sqlite:///data/online.sqlite", url))
        (tmp_path / "e.jsonl").write_text('{"view": "merchant_risk", "merchant_id": 7,'
                                          ' "event_timestamp": 1767607200, "risk": 0.5}\n')
        assert run("replay", "e.jsonl", cwd=tmp_path).returncode == 0
        ok = run("online", "--features", "merchant_risk:risk", "--entity", "merchant_id=7",
                 cwd=tmp_path)
        assert ok.returncode == 0 and "0.5" in ok.stdout, ok.stderr
    finally:
        server.kill()
    shown = url.replace("sekrit", "***")
    for args in (["online", "--features", "merchant_risk:risk", "--entity", "merchant_id=7"],
                 ["materialize"], ["replay", "e.jsonl", "--from-start"]):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"asof-stream: error: Redis online store {shown}"), r.stderr
        assert "sekrit" not in r.stderr


def test_run_until_caught_up_prints_a_summary(project: Path) -> None:  # noqa: F811
    with (project / "asof.toml").open("a") as fh:
        fh.write('\n[sources.tail]\nkind = "file"\npath = "events.jsonl"\n')
    r = run("run", "--until-caught-up", cwd=project)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"stored 3, duplicates skipped 0, dead letters 1 in \d+\.\ds\n",
                        r.stdout), r.stdout
    again = run("run", "--until-caught-up", cwd=project)  # resumed: nothing new
    assert again.stdout.startswith("stored 0, duplicates skipped 0, dead letters 0 in ")
    rp = run("replay", "events.jsonl", "--from-start", cwd=project)  # the same line; "a" has an id
    assert re.fullmatch(r"stored 2, duplicates skipped 1, dead letters 1 in \d+\.\ds\n",
                        rp.stdout), rp.stdout


def test_status_ages_read_like_freshness_and_nouns_agree(project: Path) -> None:  # noqa: F811
    assert run("replay", "events.jsonl", cwd=project).returncode == 0
    r = run("status", cwd=project)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith("  ")}
    # merchant_risk: one row for one merchant, from 2026-01-05 (days ago, as freshness says)
    assert re.search(r"merchant_risk +1 row +online 1 entity +latest 2026-01-05T10:00:00Z"
                     r" \(\d+(\.\d)?d ago\)$", lines["merchant_risk"]), r.stdout
    assert re.search(r"customer_stats +2 rows +online 1 entity ", lines["customer_stats"])
    assert "(3 rows, seq 3)" in r.stdout and "lag 0 seqs" in r.stdout
    fr = run("freshness", cwd=project)
    assert re.search(r"merchant_risk .* \d+(\.\d)?d ", fr.stdout), fr.stdout
    v = run("validate", cwd=project)
    assert "(2 entities, 2 views, 1 service, 0 sources)" in v.stdout, v.stdout


SUMMARY = r" in \d+\.\ds\n\Z"


def test_long_commands_end_with_a_summary_and_draw_nothing_off_a_terminal(
        project: Path) -> None:  # noqa: F811
    assert run("replay", "events.jsonl", cwd=project).returncode == 0
    (project / "labels.csv").write_text("customer_id,event_timestamp\nc1,2026-01-04T12:00:00Z\n"
                                        "c1,2026-01-06T00:00:00Z\n")
    assert run("training-set", "--labels", "labels.csv", "--features", "customer_stats:spend_7d",
               "--out", "train.csv", cwd=project).returncode == 0
    cases: list[tuple[list[str], str, str]] = [
        (["materialize"], "stdout", r"materialized 2 online rows"),
        # c1's row of 01-05 is in the future of the first label: the naive join takes it.
        (["leakage", "--labels", "labels.csv", "--features", "customer_stats:spend_7d"],
         "stdout", r"leakage: 1 of 2 feature cells from the future in a naive join"
                   r" \(1 of 2 label rows\); checked"),
        (["leakage", "--labels", "labels.csv", "--features", "customer_stats:spend_7d",
          "--json"], "stderr", r"leakage: 1 of 2 feature cells .*"),
        (["drift", "--reference", "train.csv", "--current", "online"], "stderr",
         r"drift: [01] of 1 feature flagged"),  # 2 values: flagged or not
        (["skew"], "stdout", r"skew: 2 keys checked in 2 views, 0 differences"),
        (["skew", "--json"], "stderr", r"skew: 2 keys checked in 2 views, 0 differences"),
        (["retention", "--before", "2026-01-05", "--dry-run"], "stdout",
         r"retention: would delete 1 row in 2 views"),  # c1's 01-04 row
        (["retention", "--before", "2026-01-06", "--view", "customer_stats", "--yes"], "stdout",
         r"retention: deleted 1 row in 1 view"),
        (["compact"], "stdout", r"sealed 2 rows into 2 segments, 0 merges, 0 stray files removed"),
    ]
    for args, stream, pattern in cases:
        r = run(*args, cwd=project)
        assert r.returncode == 0, (args, r.stderr)
        text = r.stdout if stream == "stdout" else r.stderr
        last = text.splitlines(keepends=True)[-1]
        assert re.fullmatch(pattern + SUMMARY, last), (args, text)
        if stream == "stdout":
            assert r.stderr == "", (args, r.stderr)  # no progress bar off a terminal
        elif "--json" in args:
            json.loads(r.stdout)  # stdout stays pure JSON


def test_progress_is_drawn_on_a_terminal(project: Path) -> None:  # noqa: F811
    assert run("replay", "events.jsonl", cwd=project).returncode == 0
    main_fd, sub_fd = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "asof_stream", "skew"], cwd=project,
                              env={**ENV, "COLUMNS": "100"}, stdout=subprocess.PIPE,
                              stderr=sub_fd, timeout=120)
        os.close(sub_fd)
        drawn = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main_fd)
    assert proc.returncode == 0
    assert b"skew" in drawn and b"2/2" in drawn, drawn  # the views done, on the terminal
    assert proc.stdout.decode().splitlines()[-1].startswith("skew: 2 keys checked")


def test_config_errors_on_the_command_line_are_one_line(project: Path) -> None:  # noqa: F811
    r = subprocess.run([sys.executable, "-m", "asof_stream", "validate"], cwd=project, text=True,
                       capture_output=True, timeout=120,
                       env={**ENV, "ASOF_VIEWS__CUSTOMER_STATS__TTL": "14"})
    assert r.returncode == 1
    assert r.stderr == ("asof-stream: error: ASOF_VIEWS__CUSTOMER_STATS__TTL=14: expected a"
                        " duration like '14d' (s, m, h, d), got 14\n")
    toml = project / "asof.toml"
    toml.write_text(toml.read_text().replace("[store]", "[store]\nonlne = 'x'"))
    r = run("status", cwd=project)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.endswith("asof.toml: store.onlne: unknown key; did you mean 'online'?\n")
