"""Definitions of computed features: aggregations and transforms in asof.toml."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asof_stream.config import Config, ConfigError
from tests.toml_parts import CUSTOMER_SPEND

COMPUTED = CUSTOMER_SPEND + """
spend_7d = { fn = "sum", of = "amount", window = "7d" }
orders_30d = { fn = "count", window = "30d" }
qty_max_1d = { fn = "max", of = "qty", window = "1d" }
avg_basket = { fn = "mean", of = "amount", window = "1d" }
last_category = { fn = "last", of = "category" }

[transforms.risk]
function = "my_features:risk"
inputs = ["customer_spend:spend_7d", "customer_stats:tier"]
request = { basket = "float64" }
outputs = { risk = "float64", band = "string" }
"""


def test_aggregations_and_transforms_are_referenced_like_views(
        make_config: Callable[..., Config]) -> None:
    defs = make_config(COMPUTED).defs
    assert defs.resolve_ref("customer_spend:spend_7d") == [("customer_spend", "spend_7d")]
    assert [f for _, f in defs.resolve_ref("customer_spend")] == [
        "spend_7d", "orders_30d", "qty_max_1d", "avg_basket", "last_category"]
    assert defs.resolve_ref("risk") == [("risk", "risk"), ("risk", "band")]
    assert [defs.dtype_of("customer_spend", f) for f in
            ("spend_7d", "orders_30d", "qty_max_1d", "avg_basket", "last_category")] == [
        "float64", "int64", "int64", "float64", "string"]
    assert defs.dtype_of("risk", "band") == "string"
    assert defs.entity_of("customer_spend").name == "customer"
    assert defs.join_keys_of("risk") == {"customer_id": "string"}
    agg = defs.aggregations["customer_spend"]
    assert agg.feature("spend_7d").window == 7 * 86_400 * 10**6 and agg.max_window is None
    assert [k for k in ("view", "aggregation", "transform")] == [
        defs.kind("purchases"), defs.kind("customer_spend"), defs.kind("risk")]


@pytest.mark.parametrize("extra, message", [
    ('[aggregations.a]\nsource = "nope"\nfeatures = { x = { fn = "count" } }\n',
     "aggregations.a.source: unknown view 'nope'"),
    ('[aggregations.a]\nsource = "purchases"\nfeatures = { x = { fn = "sum" } }\n',
     "sum needs 'of'"),
    ('[aggregations.a]\nsource = "purchases"\nfeatures = { x = { fn = "sum", of = "category" } }\n',
     "aggregations.a.features.x.fn: sum needs a numeric column"),
    ('[aggregations.a]\nsource = "purchases"\nfeatures = { x = { fn = "last", of = "nope" } }\n',
     "aggregations.a.features.x.of: unknown column 'nope'"),
    ('[aggregations.a]\nsource = "purchases"\nfeatures = { x = { fn = "median", of = "qty" } }\n',
     "fn"),
    ('[aggregations.a]\nsource = "purchases"\nfeatures = { x = { fn = "count", window = "-1d" } }\n',
     "window"),
    ('[aggregations.purchases]\nsource = "purchases"\nfeatures = { x = { fn = "count" } }\n',
     "the name is taken by views.purchases"),
    ('[transforms.t]\nfunction = "nocolon"\noutputs = { y = "int64" }\n', "module:function"),
    ('[transforms.t]\nfunction = "m:f"\ninputs = ["nope:x"]\noutputs = { y = "int64" }\n',
     "transforms.t.inputs: unknown view"),
    ('[transforms.t]\nfunction = "m:f"\ninputs = ["purchases:qty"]\nrequest = { qty = "int64" }\n'
     'outputs = { y = "int64" }\n', "named twice"),
])
def test_bad_computed_definitions_name_the_field(make_config: Callable[..., Config], extra: str,
                                                 message: str) -> None:
    base = COMPUTED.split("[aggregations.customer_spend]")[0]
    with pytest.raises(ConfigError, match=message):
        make_config(base + extra)
