"""A realistic churn-style event stream for the demo and ``init``: out of order, some late.

Customers spend and order over weeks; a stats view updates often (with a ttl), a
profile view rarely, and a purchases view holds the raw facts that the
``customer_spend`` aggregation computes its features from. Events arrive shuffled
within a window, and a few arrive very late, which is exactly when naive joins leak
the future.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..timestamps import now_micros, to_iso

DAY_US = 86_400 * 1_000_000

CONFIG_TOML = """\
# asof-stream example project: a churn model's features.
[store]
offline = "data/offline.sqlite"
online = "sqlite:///data/online.sqlite"

[entities.customer]
join_keys = { customer_id = "string" }
description = "A paying customer."

[views.customer_stats]
entity = "customer"
ttl = "14d"
freshness = "1d"
description = "Rolling spend and order counts."
owner = "growth-team"
tags = ["billing"]
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }

[views.customer_profile]
entity = "customer"
description = "Slowly changing profile attributes."
owner = "crm-team"
tags = ["profile"]
features = { signup_channel = "string", is_premium = "bool" }

# Raw facts: one event per purchase. The aggregation below computes features from them,
# once, for training sets and online reads alike.
[views.purchases]
entity = "customer"
description = "One row per purchase."
owner = "billing-team"
features = { amount = "float64", category = "string" }

[aggregations.customer_spend]
source = "purchases"
description = "Spend and orders computed from raw purchases."
owner = "growth-team"

[aggregations.customer_spend.features]
spend_7d = { fn = "sum", of = "amount", window = "7d" }
orders_7d = { fn = "count", window = "7d" }
avg_basket_30d = { fn = "mean", of = "amount", window = "30d" }
last_category = { fn = "last", of = "category" }

[services.churn]
features = ["customer_spend:spend_7d", "customer_spend:orders_7d", "customer_stats:tier",
            "customer_profile:is_premium"]

[sources.local]
kind = "file"
path = "events/*.jsonl"
"""

TIERS = ("bronze", "silver", "gold")
CATEGORIES = ("grocery", "books", "garden", "toys")
CHANNELS = ("web", "app", "partner", "store")


@dataclass
class DemoData:
    events: list[dict[str, Any]]
    labels: list[dict[str, Any]]


def generate(customers: int = 200, days: int = 60, seed: int = 7,
             end_us: int | None = None) -> DemoData:
    """Events (in arrival order) and churn labels for ``customers`` over the ``days``
    before ``end_us`` (default: now, so online lookups are fresh)."""
    rng = random.Random(seed)
    end = now_micros() if end_us is None else end_us
    start = end - days * DAY_US
    events: list[tuple[int, dict[str, Any]]] = []  # (arrival time, event)
    labels: list[dict[str, Any]] = []
    n = 0
    for c in range(customers):
        cid = f"c{c:04d}"
        premium = rng.random() < 0.3
        t = start + rng.randrange(0, 5 * DAY_US)
        events.append((t, {"view": "customer_profile", "customer_id": cid,
                           "event_timestamp": to_iso(t), "signup_channel": rng.choice(CHANNELS),
                           "is_premium": premium, "event_id": f"p-{cid}-0"}))
        spend = rng.uniform(5, 80)
        churn_day = rng.randrange(days // 2, days * 2)
        while True:
            t += rng.randrange(DAY_US // 4, 3 * DAY_US)
            if t >= end:
                break
            day = (t - start) // DAY_US
            fading = day > churn_day - 10
            spend = max(0.0, spend * rng.uniform(0.5, 0.95) if fading
                        else spend * rng.uniform(0.9, 1.2))
            n += 1
            ev = {"view": "customer_stats", "customer_id": cid, "event_timestamp": to_iso(t),
                  "spend_7d": round(spend, 2), "orders_7d": max(0, int(spend // 12)),
                  "tier": TIERS[min(2, int(spend // 30))], "event_id": f"s-{n}"}
            late = rng.random() < 0.05
            arrival = t + (rng.randrange(2 * DAY_US, 6 * DAY_US) if late
                           else rng.randrange(0, 3_600_000_000))
            events.append((arrival, ev))
            for k in range(rng.randrange(0, 3)):  # the purchases behind the stats
                n += 1
                pt = t - rng.randrange(0, DAY_US // 2)
                purchase = {"view": "purchases", "customer_id": cid,
                            "event_timestamp": to_iso(pt),
                            "amount": round(spend / 3 * rng.uniform(0.5, 1.5), 2),
                            "category": rng.choice(CATEGORIES), "event_id": f"b-{n}-{k}"}
                events.append((arrival + k, purchase))
            if rng.random() < 0.25 and t + DAY_US // 2 < end:
                labels.append({"customer_id": cid, "event_timestamp": to_iso(t + DAY_US // 2),
                               "churned": int(day + 14 >= churn_day)})
    events.sort(key=lambda a: a[0])
    rng.shuffle(labels)
    return DemoData([e for _, e in events], labels)


def jsonl(events: list[dict[str, Any]]) -> Iterator[str]:
    for ev in events:
        yield json.dumps(ev) + "\n"
