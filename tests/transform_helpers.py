"""A project with on-demand transforms: the asof.toml part and the module beside it."""

from __future__ import annotations

from pathlib import Path

TRANSFORMS_TOML = """
[transforms.risk]
function = "my_features:risk"
inputs = ["customer_stats:spend_7d", "customer_stats:tier"]
request = { basket = "float64" }
outputs = { score = "float64", band = "string" }

[transforms.broken]
function = "my_features:broken"
inputs = ["customer_stats:spend_7d"]
outputs = { y = "float64" }

[transforms.badtype]
function = "my_features:badtype"
inputs = ["customer_stats:orders_7d"]
outputs = { n = "int64" }

[transforms.short]
function = "my_features:short"
inputs = ["customer_stats:orders_7d"]
outputs = { m = "int64" }

[transforms.missing_module]
function = "not_there:f"
inputs = ["customer_stats:orders_7d"]
outputs = { z = "int64" }

[transforms.bad_import]
function = "bad_module:f"
inputs = ["customer_stats:orders_7d"]
outputs = { z = "int64" }
"""

MODULE = '''
def risk(cols):
    score, band = [], []
    for spend, tier, basket in zip(cols["spend_7d"], cols["tier"], cols["basket"]):
        s = (spend or 0.0) * 2 + (basket or 0.0)
        score.append(s)
        band.append(("high" if s > 20 else "low") + "/" + (tier or "none"))
    return {"score": score, "band": band}


def broken(cols):
    # 1 / 0 where spend_7d is 12.5: a raise in some rows only
    return {"y": [None if v is None else 1.0 / (v - 12.5) for v in cols["spend_7d"]]}


def badtype(cols):
    return {"n": ["x" if v is not None else None for v in cols["orders_7d"]]}


def short(cols):
    return {"m": [1]}
'''


def write_modules(root: Path) -> None:
    """my_features.py (the functions) and bad_module.py (raises on import) beside asof.toml."""
    (root / "my_features.py").write_text(MODULE, encoding="utf-8")
    (root / "bad_module.py").write_text("import nonexistent_package_xyz\n", encoding="utf-8")
