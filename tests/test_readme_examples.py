"""The README's and docs' TOML examples load as written (the docs run, not just read)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asof_stream.config import parse_config

ROOT = Path(__file__).parent.parent


def test_readme_project_config_loads(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A project.*?```toml\n(.*?)```", text, re.S)
    assert block is not None
    defs = parse_config(block.group(1), tmp_path / "asof.toml").defs
    assert defs.views["customer_stats"].freshness == 3_600_000_000
    assert defs.views["customer_stats"].owner == "growth-team"
    assert defs.resolve_ref("customer_spend:spend_30d") == [("customer_spend", "spend_30d")]
    assert defs.log.seal_rows == 100_000


@pytest.mark.parametrize("doc", ["computed.md"])
def test_docs_aggregation_examples_load(doc: str, tmp_path: Path) -> None:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[aggregations." in b]
    assert blocks
    prelude = '[entities.customer]\njoin_keys = { customer_id = "string" }\n'
    for b in blocks:
        body = b if "[entities." in b else prelude + b
        if "[views.purchases]" not in body and 'source = "purchases"' in body:
            body = '[views.purchases]\nentity = "customer"\nfeatures = { amount = "float64",' \
                   ' category = "string" }\n' + body
        parse_config(body, tmp_path / "asof.toml")
