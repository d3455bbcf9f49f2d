"""The store the leakage CLI tests start from."""

from __future__ import annotations

from asof_stream.config import Config
from asof_stream.stores import open_stores
from tests.join_helpers import commit


def commit_spends_around_jan5(config: Config) -> None:
    """Two customer_stats events of c1 in ``config``'s store: 2026-01-01 (spend 1.0) and
    2026-01-09 (spend 9.0), so a label at 2026-01-05 sees one from the past and one ahead."""
    with open_stores(config) as stores:
        commit(stores.committer(), [
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-01",
             "spend_7d": 1.0},
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-09",
             "spend_7d": 9.0}])
