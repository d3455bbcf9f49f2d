"""Dead letters a person can act on: the line in the file, the field at fault, and the
same order (newest first) in ``asof-stream dead-letters`` and on the web page."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from asof_stream.config import load_config
from asof_stream.ingest.dead_letters import offending_field
from tests.conftest import BASIC_TOML
from tests.page_helpers import Tables
from tests.server_helpers import running_server
from tests.test_cli_core import run

GOOD = {"view": "merchant_risk", "merchant_id": 7, "event_timestamp": 1767607200, "risk": 0.5}
LINES = [
    json.dumps(GOOD),
    "",                                                      # blank: no record, still a line
    "{broken",                                               # line 3: not JSON
    json.dumps({**GOOD, "risk": "high"}),                    # line 4: feature risk
    json.dumps({**GOOD, "merchant_id": "x"}),                # line 5: join key
    json.dumps({**GOOD, "event_timestamp": "never"}),        # line 6
    json.dumps({**GOOD, "rsk": 1}),                          # line 7: unknown field
    json.dumps({k: v for k, v in GOOD.items() if k != "view"}),  # line 8: no view
]
WANT = [(8, "view"), (7, "rsk"), (6, "event_timestamp"), (5, "merchant_id"), (4, "risk"),
        (3, None)]  # newest first


def _project(tmp_path: Path) -> Path:
    (tmp_path / "asof.toml").write_text(
        BASIC_TOML + '\n[sources.tail]\nkind = "file"\npath = "in/*.jsonl"\n')
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "events.jsonl").write_text("\n".join(LINES) + "\n")
    assert run("run", "--until-caught-up", cwd=tmp_path).returncode == 0
    return tmp_path


def _listed(root: Path, *args: str) -> list[dict[str, object]]:
    r = run("dead-letters", "--json", *args, cwd=root)
    assert r.returncode == 0, r.stderr
    out: list[dict[str, object]] = json.loads(r.stdout)["dead_letters"]
    return out


def test_file_dead_letters_give_line_numbers_and_fields(tmp_path: Path) -> None:
    root = _project(tmp_path)
    got = _listed(root)
    assert [(d["line"], d["field"]) for d in got] == WANT
    assert got[-1]["position"] == f"events.jsonl:{len(LINES[0]) + 2}"  # the byte offset stays
    text = run("dead-letters", cwd=root).stdout
    assert f"tail events.jsonl line 4 (byte {sum(len(x) + 1 for x in LINES[:3])})" in text
    assert "    field:  risk\n    reason: feature 'risk' (float64)" in text
    # A replayed file has lines too.
    (root / "more.jsonl").write_text("\n\n" + LINES[3] + "\n")
    assert run("replay", "more.jsonl", cwd=root).returncode == 0
    assert (_listed(root, "--limit", "1")[0]["line"], _listed(root)[0]["field"]) == (3, "risk")


def test_no_line_number_when_the_file_changed_or_went(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = root / "in" / "events.jsonl"
    path.write_text("\n".join(["{}"] * 3 + LINES[3:]) + "\n")  # rewritten: offsets moved
    assert [d["line"] for d in _listed(root)] == [None] * len(WANT)
    path.unlink()
    got = _listed(root)
    assert [d["line"] for d in got] == [None] * len(WANT)
    assert [d["field"] for d in got] == [f for _, f in WANT]  # the field needs no file


def test_cli_and_page_list_them_in_the_same_order(tmp_path: Path) -> None:
    root = _project(tmp_path)
    cli = _listed(root)
    with running_server(load_config(root / "asof.toml")) as url:
        page = Tables(httpx.get(url + "/", timeout=10).text)
    rows = [cells for _, cells in page.body_rows("dead-letters-table")]
    assert [int(c[0]) for c in rows] == [d["id"] for d in cli]
    assert [(c[3], c[4]) for c in rows] == [
        (f"events.jsonl line {line} (byte {str(d['position']).rpartition(':')[2]})",
         field or "-") for (line, field), d in zip(WANT, cli, strict=True)]


def test_offending_field_from_every_reason() -> None:
    for reason, field in [
        ("missing required feature 'risk'", "risk"),
        ("missing join key 'merchant_id' of entity 'merchant'", "merchant_id"),
        ("missing event_timestamp", "event_timestamp"),
        ("event_timestamp 2030-01-01T00:00:00Z is more than 1d in the future", "event_timestamp"),
        ("event_id must be a string, got 3", "event_id"),
        ("'view' must be a string, got 3", "view"),
        ("event is for view 'a' but the source is bound to 'b'", "view"),
        ("oversized event: 9 bytes > limit 8", None),
        ("event is not a JSON object but list", None),
        ("event is not valid UTF-8", None),
    ]:
        assert offending_field(reason) == field, reason
