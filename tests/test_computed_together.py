"""Aggregations feeding an on-demand transform: one value offline and online."""

from __future__ import annotations

from collections.abc import Callable

from asof_stream import FeatureStore
from asof_stream.config import Config
from asof_stream.timestamps import now_micros, to_iso

TOML = """
[views.purchases]
entity = "customer"
features = { amount = "float64", category = "string" }

[aggregations.spend]
source = "purchases"

[aggregations.spend.features]
spend_7d = { fn = "sum", of = "amount", window = "7d" }
orders_7d = { fn = "count", window = "7d" }
last_category = { fn = "last", of = "category" }

[transforms.basket_share]
function = "share:basket_share"
inputs = ["spend:spend_7d"]
request = { basket = "float64" }
outputs = { share = "float64" }
"""

MODULE = '''
def basket_share(cols):
    return {"share": [None if s is None or s == 0 else b / s
                      for s, b in zip(cols["spend_7d"], cols["basket"])]}
'''

DAY = 86_400 * 10**6


def test_an_aggregation_through_a_transform_is_the_same_offline_and_online(
        make_config: Callable[..., Config]) -> None:
    config = make_config(TOML)
    (config.root / "share.py").write_text(MODULE, encoding="utf-8")
    now = now_micros()
    rows = [("c1", now - 8 * DAY, 100.0, "old"),     # left the 7-day window
            ("c1", now - 7 * DAY + 10**6, 10.0, "a"),  # inside, just
            ("c1", now - DAY, 30.0, "b"),
            ("c2", now - 2 * DAY, 5.0, "z")]
    with FeatureStore(config) as store:
        r = store.push([{"view": "purchases", "customer_id": c, "event_timestamp": to_iso(t),
                         "amount": a, "category": k} for c, t, a, k in rows])
        assert r.stored == 4, r.rejects
        refs = ["spend:spend_7d", "spend:orders_7d", "spend:last_category", "basket_share"]
        entities = [{"customer_id": "c1", "basket": 20.0}, {"customer_id": "c2", "basket": 1.0},
                    {"customer_id": "c9", "basket": 3.0}]
        online = store.get_online_features(refs, entities)
        labels = [{**e, "event_timestamp": to_iso(now)} for e in entities]
        offline = store.get_historical_features(labels, refs).to_records()
    want = {"spend_7d": [40.0, 5.0, 0.0], "orders_7d": [2, 1, 0],
            "last_category": ["b", "z", None], "share": [0.5, 0.2, None]}
    for name, values in want.items():
        assert online[name] == values, name
        assert [row[name] for row in offline] == values, name
