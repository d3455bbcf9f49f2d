"""The pieces of asof.toml that most test projects share, written once."""

from __future__ import annotations

#: The stores (relative to the config's folder) and the customer entity.
PRELUDE = """
[store]
offline = "data/offline.sqlite"
online = "sqlite:///data/online.sqlite"

[entities.customer]
join_keys = { customer_id = "string" }
"""

#: :data:`PRELUDE` with the online store left as ``%(online)s`` (filled in with ``%``).
PRELUDE_ONLINE = PRELUDE.replace('"sqlite:///data/online.sqlite"', '"%(online)s"')

#: The customer_stats view most daemon and online tests write to.
CUSTOMER_STATS = """
[views.customer_stats]
entity = "customer"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }
"""

#: The int64-keyed merchant entity.
MERCHANT = """
[entities.merchant]
join_keys = { merchant_id = "int64" }
"""

#: The purchases view (amount, qty, category) of the customer.
PURCHASES = """
[views.purchases]
entity = "customer"
features = { amount = "float64", qty = "int64", category = "string" }
"""

#: :data:`PURCHASES` and the head of the ``customer_spend`` aggregation over it: what
#: follows is its features, one ``name = { fn = ... }`` a line.
CUSTOMER_SPEND = PURCHASES + """
[aggregations.customer_spend]
source = "purchases"

[aggregations.customer_spend.features]
"""


def described_customer_stats(spend_description: str) -> str:
    """The customer_stats view with its metadata (ttl, freshness, description, owner, tags)
    and ``spend_7d`` described as ``spend_description`` (a TOML literal string: no ``'``)."""
    return f"""
[views.customer_stats]
entity = "customer"
ttl = "14d"
freshness = "1h"
description = "Spend and orders per customer"
owner = "growth"
tags = ["pii-free", "churn"]

[views.customer_stats.features]
spend_7d = {{ dtype = "float64", description = '{spend_description}' }}
orders_7d = "int64"
tier = "string"
"""
