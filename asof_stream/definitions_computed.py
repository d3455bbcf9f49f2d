"""Computed features: windowed aggregations over a view's raw events, and on-demand
transforms (Python functions over features and request-time values).

Both are referenced like a view's features (``customer_spend:spend_7d``,
``churn_risk:risk``); one definition serves training sets and online reads alike.

```toml
[aggregations.customer_spend]
source = "purchases"                       # a view whose events are raw facts

[aggregations.customer_spend.features]
spend_7d = { fn = "sum", of = "amount", window = "7d" }
orders_30d = { fn = "count", window = "30d" }
last_category = { fn = "last", of = "category" }   # no window: all history up to t

[transforms.churn_risk]
function = "features_py:churn_risk"        # module:function, the module found beside asof.toml
inputs = ["customer_spend:spend_7d", "customer_stats:tier"]
request = { basket = "float64" }           # request-time values (a request source)
outputs = { risk = "float64" }
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from .definitions_base import FeatureType, _check_name, _Model, duration_value

AggFunction = Literal["count", "sum", "mean", "min", "max", "last", "stddev"]
NUMERIC = ("int64", "float64")




class AggFeature(_Model):
    """One aggregated feature: ``fn`` of column ``of`` over the last ``window``.

    At time ``t`` the rows with ``t - window < event_timestamp <= t`` count (``< t``
    with strict; also ``ingest_ts <= t`` as known at). No window: every row up to ``t``.
    An empty window gives count 0 and sum 0, every other function null.
    """

    name: str
    fn: AggFunction
    of: str | None = None
    window: int | None = None  # microseconds
    description: str = ""

    _w = field_validator("window", mode="before")(lambda v: duration_value(v, "7d"))

    @model_validator(mode="after")
    def _check(self) -> AggFeature:
        _check_name(self.name, "feature")
        if self.fn != "count" and self.of is None:
            raise ValueError(f"{self.fn} needs 'of', the source column to aggregate")
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be positive")
        return self


class Aggregation(_Model):
    """Features computed from the raw events of one view (``source``), per its entity."""

    name: str
    source: str
    features: tuple[AggFeature, ...]
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, v: Any) -> Any:
        if isinstance(v, dict):  # TOML form: { name = { fn = ..., of = ..., window = ... } }
            return [{"name": k, **spec} if isinstance(spec, dict) else spec
                    for k, spec in v.items()]
        return v

    @model_validator(mode="after")
    def _unique(self) -> Aggregation:
        _check_name(self.name, "aggregation")
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("an aggregation needs at least one feature")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate feature names {dup}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> AggFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def max_window(self) -> int | None:
        """The longest window (None when some feature looks at all history)."""
        windows = [f.window for f in self.features]
        return None if any(w is None for w in windows) else max(w for w in windows if w)


def agg_dtype(fn: str, source_dtype: str | None) -> FeatureType:
    """The type of an aggregate's value: count int64, mean/stddev float64, the others the
    source column's."""
    if fn == "count":
        return "int64"
    if fn in ("mean", "stddev"):
        return "float64"
    assert source_dtype is not None
    return source_dtype  # type: ignore[return-value]


def check_source_column(agg: AggFeature, dtype: str | None, where: str) -> None:
    """The ``of`` column exists in the source view and suits ``fn``."""
    if agg.of is None:
        return
    if dtype is None:
        raise ValueError(f"{where}.of: unknown column {agg.of!r} of the source view")
    if agg.fn in ("sum", "mean", "min", "max", "stddev") and dtype not in NUMERIC:
        raise ValueError(f"{where}.fn: {agg.fn} needs a numeric column (int64 or float64);"
                         f" {agg.of!r} is {dtype}")


class Transform(_Model):
    """An on-demand transform: ``function`` (``module:function``) computes ``outputs``
    from the referenced ``inputs`` and the ``request`` values given at request time.

    The function takes one dict of columns (name -> list, one item per row: an input
    feature under its feature name, a request value under its own name) and returns a
    dict with a list per output, of the same length. Training sets call it once over all
    label rows; serving calls it per request. A raise or a wrong type is an error that
    names the transform.
    """

    name: str
    function: str
    inputs: tuple[str, ...] = ()
    request: dict[str, FeatureType] = {}
    outputs: dict[str, FeatureType]
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Transform:
        _check_name(self.name, "transform")
        module, sep, func = self.function.partition(":")
        if not sep or not module or not func:
            raise ValueError(f"function: expected 'module:function', got {self.function!r}")
        if not self.outputs:
            raise ValueError("outputs: a transform needs at least one output")
        for n in (*self.outputs, *self.request):
            _check_name(n, "transform value")
        return self

    @property
    def feature_names(self) -> list[str]:
        return list(self.outputs)
