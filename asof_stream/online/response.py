"""What :meth:`asof_stream.FeatureStore.get_online_features` returns, as Feast shapes it."""

from __future__ import annotations

from collections.abc import Iterator, KeysView
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OnlineResponse:
    """Columns of an online read: the join keys, then one column per feature.

    ``to_dict()`` and ``to_df()`` give the values only, as Feast's ``OnlineResponse``
    does; per feature, ``statuses[name]`` holds PRESENT / NOT_FOUND / OUTSIDE_MAX_AGE and
    ``event_timestamps[name]`` the row's event time (integer µs since the epoch, UTC, or
    None). Indexing (``response["spend_7d"]``) reads a values column.
    """

    values: dict[str, list[Any]]
    statuses: dict[str, list[str]] = field(default_factory=dict)
    event_timestamps: dict[str, list[int | None]] = field(default_factory=dict)

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        """The value columns; with ``include_event_timestamps``, each feature's times
        too, under ``NAME__ts`` (integer µs)."""
        out = {k: list(v) for k, v in self.values.items()}
        if include_event_timestamps:
            for name, times in self.event_timestamps.items():
                out[f"{name}__ts"] = list(times)
        return out

    def to_df(self, include_event_timestamps: bool = False) -> Any:
        """The value columns as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.to_dict(include_event_timestamps))

    def __getitem__(self, name: str) -> list[Any]:
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def keys(self) -> KeysView[str]:
        return self.values.keys()
