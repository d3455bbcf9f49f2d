"""The timeline picture: the row chosen per label is the join's, future values are marked,
every value escaped; ``asof-stream leakage`` writes the HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.monitoring.leakage_html import leakage_pictures, render_leakage_html
from asof_stream.monitoring.timeline_svg import frame_for, timeline_svg
from asof_stream.offline.log import OfflineLog
from asof_stream.training.asof import asof_join
from asof_stream.training.join import JoinMode
from asof_stream.training.labels import labels_from_any
from asof_stream.training.leakage import leakage_report
from asof_stream.training.timeline import EventRow, cap_rows, choose, read_events
from tests.join_helpers import BASE, S, commit, event, join_config, label_rows, memory_log
from tests.leakage_helpers import commit_spends_around_jan5

CFG = join_config()
EVIL = '<script>alert("x")</script>'


def history() -> OfflineLog:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1, s=EVIL),
               event("cs", BASE + 3 * S, customer_id="a", x=3, s="q"),
               event("cs", BASE + 3 * S, customer_id="a", x=4, s="r"),  # same time, later seq
               event("cs", BASE + S, customer_id="b", x=10, s="b")], available_at=BASE)
    # Event time +2s, known only at +6s; then a row 20s on (the ttl of cs is 5s).
    commit(c, [event("cs", BASE + 2 * S, customer_id="a", x=2, s="p")], available_at=BASE + 6 * S)
    commit(c, [event("cs", BASE + 20 * S, customer_id="a", x=20, s="z")],
           available_at=BASE + 20 * S)
    return log


TIMES = [BASE - S, BASE, BASE + S, BASE + 2 * S, BASE + 3 * S, BASE + 4 * S, BASE + 6 * S,
         BASE + 7 * S, BASE + 9 * S, BASE + 19 * S, BASE + 20 * S, BASE + 30 * S]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("as_known_at", [False, True])
def test_choice_at_label_times_is_the_joins(strict: bool, as_known_at: bool) -> None:
    log = history()
    lab = labels_from_any(label_rows([("a", 1, t) for t in TIMES]), CFG.defs)
    join = asof_join(log, CFG.defs, {"cs": lab.entity_keys("cs")}, lab.times,
                     JoinMode(strict, as_known_at))["cs"]
    ev = read_events(log, CFG.defs, "cs", "a")
    assert [r.seq for r in ev.rows] == [1, 5, 2, 3, 6] and ev.last is not None and ev.last.seq == 6
    mine = [getattr(choose(ev.rows, t, strict=strict, as_known_at=as_known_at, ttl=ev.ttl),
                    "seq", None) for t in TIMES]
    assert mine == join.seqs
    assert any(s is None for s in mine) and len({s for s in mine if s}) >= 2  # a real test


def test_cap_keeps_the_asked_rows_and_the_newest() -> None:
    rows = [EventRow(i, i, i, {}) for i in range(1, 11)]
    assert [r.seq for r in cap_rows(rows, [2], 4)] == [2, 8, 9, 10]
    assert cap_rows(rows, [], 20) == rows
    ev = read_events(history(), CFG.defs, "cs", "a", limit=2, keep_times=[BASE + S])
    assert [r.seq for r in ev.rows] == [1, 6] and ev.total == 5 and ev.truncated


def test_html_marks_the_choice_and_the_future_and_escapes() -> None:
    log = history()
    rows = label_rows([("a", 1, BASE + S), ("a", 1, BASE + 4 * S), ("b", 1, BASE + 9 * S)])
    rows.append({"customer_id": "<b>evil</b>", "merchant_id": 1,
                 "event_timestamp": "2026-01-01T00:00:01Z", "row": 3})
    lab = labels_from_any(rows, CFG.defs)
    report = leakage_report(log, CFG.defs, lab, ["cs:x", "cs:s"])
    pics = leakage_pictures(log, CFG.defs, lab, ["cs:x", "cs:s"], report)
    assert [p.entity["customer_id"] for p in pics] == ["a", "b", "<b>evil</b>"]
    assert [p.leaking for p in pics] == [True, False, False]
    page = render_leakage_html(report, pics, generated_at=BASE)
    assert EVIL not in page and "<b>evil</b>" not in page
    assert html_escaped(EVIL) in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    section = page.split('id="entity-0"')[1].split('id="entity-1"')[0]
    chosen = sorted(int(s) for s in re.findall(
        r'<circle class="tl-mark[^"]*\bchosen\b[^"]*" data-view="cs" data-seq="(\d+)"', section))
    join = asof_join(log, CFG.defs, {"cs": ["a", "a"]}, [BASE + S, BASE + 4 * S])["cs"]
    assert chosen == sorted(join.seqs) == [1, 3]  # at +4s: the later seq of the two rows at +3s
    future = re.findall(r'<circle class="tl-mark[^"]*\bfuture\b[^"]*" data-view="cs" '
                        r'data-seq="(\d+)"', section)
    assert future == ["6"]  # the naive row (x=20 @ +20s) is from both labels' future
    assert section.count('<span class="future-flag">from the future</span>') == 4
    assert section.count('<tr data-label="L') == 4 and section.count('class="tl-label"') == 2
    assert "<script" not in page.replace(html_escaped(EVIL), "")
    assert "1 @ 2026-01-01T00:00:00Z" in section and "20 @ 2026-01-01T00:00:20Z" in section


def html_escaped(text: str) -> str:
    import html
    return html.escape(repr(text))


def test_svg_escapes_view_and_entity_text() -> None:
    ev = read_events(history(), CFG.defs, "cs", "a")
    ev.view, ev.entity = "<v>", "<e>"
    svg = timeline_svg([ev], [BASE], frame_for([ev], [BASE]), label_names=["<l>"])
    assert "<v>" not in svg and "<e>" not in svg and "<l>" not in svg
    assert "&lt;v&gt;" in svg and "&lt;l&gt;" in svg


def test_cli_writes_the_html_beside_the_labels(config: Config, tmp_path: Path) -> None:
    commit_spends_around_jan5(config)
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,event_timestamp\nc1,2026-01-05\nc1,2026-01-10\n")
    args = ["leakage", "--config", str(config.path), "--labels", str(labels),
            "--features", "customer_stats:spend_7d"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    page = (tmp_path / "leakage.html").read_text(encoding="utf-8")
    assert 'id="timeline-0"' in page and "from the future" in page
    assert "label rows it fills from the future: 1 (50.00%)" in r.output
    other = tmp_path / "out" / "report.html"
    r = CliRunner().invoke(main, [*args, "--json", "--html", str(other)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["leaking_rows"] == 1 and other.exists()
    (tmp_path / "leakage.html").unlink()
    r = CliRunner().invoke(main, [*args, "--no-html"])
    assert r.exit_code == 0 and not (tmp_path / "leakage.html").exists()
    r = CliRunner().invoke(main, [*args, "--html", str(labels)])
    assert r.exit_code == 1 and "labels file" in r.output
    assert labels.read_text().startswith("customer_id")
