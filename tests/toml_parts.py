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
