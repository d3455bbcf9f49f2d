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

#: The int64-keyed merchant entity.
MERCHANT = """
[entities.merchant]
join_keys = { merchant_id = "int64" }
"""
