"""The Python API: :class:`FeatureStore`, shaped after Feast's."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .definitions import Definitions, FeatureService, output_names
from .ingest.commit import BatchResult
from .ingest.sources.base import Record
from .online.read import read_features
from .online.response import OnlineResponse
from .stores import Stores, can_write, open_stores
from .timestamps import to_iso
from .transforms import request_names
from .vocabulary import speaks_api


class FeatureStore:
    """Definitions from one ``asof.toml`` plus its offline log and online store.

    Errors name this API's keyword arguments (``timestamp_column=``), not CLI flags.

    >>> store = FeatureStore("asof.toml")                              # doctest: +SKIP
    >>> store.push([{"view": "customer_stats", "customer_id": "c1",    # doctest: +SKIP
    ...              "event_timestamp": "2026-01-05T10:00:00Z", "spend_7d": 12.5}])
    >>> store.get_online_features(["customer_stats:spend_7d"],         # doctest: +SKIP
    ...                           [{"customer_id": "c1"}])
    """

    def __init__(self, config_path: str | os.PathLike[str] | Config | None = None, *,
                 repo_path: str | os.PathLike[str] | None = None) -> None:
        """``config_path``: an ``asof.toml`` (default ``./asof.toml``) or a loaded Config;
        ``repo_path``: a folder holding ``asof.toml``, as Feast's ``repo_path``."""
        if config_path is not None and repo_path is not None:
            raise ValueError("give config_path or repo_path, not both")
        if isinstance(config_path, Config):
            self.config = config_path
        else:
            path = Path(repo_path) / "asof.toml" if repo_path is not None else Path(
                config_path if config_path is not None else "asof.toml")
            self.config = load_config(path)
        self._stores: Stores | None = None
        #: (refs, full names) -> (definitions, pairs, output names, request names): a
        #: read resolves its refs once per definitions, not per call
        self._reads: dict[tuple[tuple[str, ...], bool],
                          tuple[Definitions, list[tuple[str, str]], list[str], set[str]]] = {}

    @property
    def stores(self) -> Stores:
        """The project's stores, healed; in a read-only project they are opened read-only
        (nothing can be healed there: see :attr:`online_lag`)."""
        if self._stores is None:
            if can_write(self.config):
                self._stores = open_stores(self.config)
            else:
                self._stores = open_stores(self.config, heal=False, readonly=True)
        return self._stores

    @property
    def online_lag(self) -> int:
        """How many log seqs the online store has not applied (0 once healed)."""
        stores = self.stores
        return max(0, stores.log.max_seq() - stores.online.applied_seq())

    def close(self) -> None:
        if self._stores is not None:
            self._stores.close()
            self._stores = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Definitions, as in Feast.
    def list_entities(self) -> list[Any]:
        return list(self.config.defs.entities.values())

    def list_feature_views(self) -> list[Any]:
        return list(self.config.defs.views.values())

    def list_feature_services(self) -> list[Any]:
        return list(self.config.defs.services.values())

    def push(self, rows: Any, *, view: str | None = None,
             source: str = "python", available_at: int | None = None) -> BatchResult:
        """Validate and commit rows in one transaction; bad rows become dead letters.

        ``rows``: dicts, a pandas DataFrame or a pyarrow Table (datetimes are sent as
        RFC 3339 text; naive ones mean UTC)."""
        records = [Record(json.dumps(dict(r), default=_json_default).encode(), f"{source}:{i}")
                   for i, r in enumerate(_row_dicts(rows))]
        return self.stores.committer(view).commit(source, records, available_at=available_at)

    @speaks_api
    def get_online_features(self, features: Sequence[str | FeatureService],
                            entity_rows: Sequence[Mapping[str, Any]],
                            full_feature_names: bool = False,
                            request_data: Mapping[str, Any] | None = None) -> OnlineResponse:
        """The freshest values of ``features`` (refs, or a service from
        :meth:`get_feature_service`) for each entity row, as Feast's ``OnlineResponse``:
        ``.to_dict()``, ``.to_df()``, with ``.statuses`` and ``.event_timestamps`` beside.

        Transforms' request values go in the entity rows (as Feast takes them) or in
        ``request_data``: name -> one value for every row, or a list with one per row.
        A failing transform raises :class:`~asof_stream.transforms.TransformError`."""
        pairs, names, request = self._resolved(features, full_feature_names)
        rows = _with_request(entity_rows, request_data)
        results = read_features(self.config.defs, self.stores.online, pairs, rows)
        out: dict[str, list[Any]] = {}
        for key in dict.fromkeys(k for row in entity_rows for k in row if k not in request):
            out[key] = [row.get(key) for row in entity_rows]
        response = OnlineResponse(out)
        for name, pair in zip(names, pairs, strict=True):
            out[name] = [r[pair].value for r in results]
            response.statuses[name] = [r[pair].status for r in results]
            response.event_timestamps[name] = [r[pair].event_timestamp for r in results]
        return response

    def _resolved(self, features: Sequence[str | FeatureService], full_feature_names: bool,
                  ) -> tuple[list[tuple[str, str]], list[str], set[str]]:
        """The pairs, output names and request names of a read's ``features``."""
        defs = self.config.defs
        key = (tuple(self._refs(features)), full_feature_names)
        hit = self._reads.get(key)
        if hit is not None and hit[0] is defs:
            return hit[1], hit[2], hit[3]
        pairs = defs.resolve_refs(list(key[0]))
        names = output_names(pairs, full_feature_names)
        request = set(request_names(defs, pairs))
        if len(self._reads) > 1024:  # bounded: forget, and resolve again
            self._reads.clear()
        self._reads[key] = (defs, pairs, names, request)
        return pairs, names, request

    def get_feature_service(self, name: str) -> FeatureService:
        """A feature service by name, usable in ``features=`` of the reads."""
        service = self.config.defs.services.get(name)
        if service is None:
            known = ", ".join(sorted(self.config.defs.services)) or "(none)"
            raise ValueError(f"unknown feature service {name!r}; known services: {known}")
        return service

    @staticmethod
    def _refs(features: Sequence[str | FeatureService] | FeatureService) -> list[str]:
        items = [features] if isinstance(features, FeatureService) else list(features)
        return [f"@{f.name}" if isinstance(f, FeatureService) else f for f in items]

    @speaks_api
    def lookup(self, features: Sequence[str], entity: Mapping[str, str],
               full_feature_names: bool = False,
               request: Mapping[str, str] | None = None,
               now: int | None = None) -> dict[str, dict[str, Any]]:
        """One entity, its join keys (and ``request`` values of transforms) given as text
        (``KEY=VALUE`` from a command line): per output name the value, status and
        event time (RFC 3339). ``asof-stream online`` prints this. ``now`` (µs): the
        instant aggregations are computed at (default: the clock)."""
        pairs = self.config.defs.resolve_refs(list(features))
        names = output_names(pairs, full_feature_names)
        result = read_features(self.config.defs, self.stores.online, pairs,
                               [{**entity, **(request or {})}], from_text=True, now=now)[0]
        return {name: {"value": fv.value, "status": fv.status,
                       "event_timestamp": to_iso(fv.event_timestamp)}
                for name, fv in zip(names, result.values(), strict=True)}

    @speaks_api
    def get_historical_features(self, entity_df: Any, features: Sequence[str | FeatureService], *,
                                timestamp_column: str = "event_timestamp", strict: bool = False,
                                as_known_at: bool = False,
                                full_feature_names: bool = False, jobs: int = 1) -> Any:
        """Point-in-time join of labels (a path, a list of dicts or a pandas DataFrame).

        ``jobs`` > 1 joins in that many forked processes (same result); leave it at 1
        where forking this process is unsafe (threads holding locks).
        """
        from .training.labels import labels_from_any
        from .training.pipeline import join_labels

        labels = labels_from_any(entity_df, self.config.defs, timestamp_column=timestamp_column)
        self.stores  # noqa: B018 -- opened (and created) before the join reads the log
        return join_labels(self.config, self.config.defs, labels, self._refs(features),
                           strict=strict, as_known_at=as_known_at,
                           full_feature_names=full_feature_names, jobs=jobs)

    @speaks_api
    def materialize(self, view: str | None = None) -> int:
        """Rebuild the online store from the log (one file or every shard); rows written."""
        from .offline.shards import is_sharded

        if is_sharded(self.config):
            from .ingest.sharded_commit import materialize_shards

            return materialize_shards(self.config, view)
        from .online.materialize import materialize

        with open_stores(self.config, heal=False) as stores:
            return materialize(stores.log, stores.online, view)

    @staticmethod
    def init(directory: str | os.PathLike[str]) -> Path:
        """Write an example project; returns its asof.toml."""
        from .demo.scaffold import write_example_project

        return write_example_project(Path(directory))[0]


def _with_request(rows: Sequence[Mapping[str, Any]],
                  request_data: Mapping[str, Any] | None) -> Sequence[Mapping[str, Any]]:
    """Entity rows with ``request_data`` merged in (a list: one value per row)."""
    if not request_data:
        return rows
    out = [dict(r) for r in rows]
    for name, value in request_data.items():
        if isinstance(value, list | tuple):
            if len(value) != len(out):
                raise ValueError(f"request_data[{name!r}] has {len(value)} values for"
                                 f" {len(out)} entity rows")
            for r, v in zip(out, value, strict=True):
                r[name] = v
        else:
            for r in out:
                r[name] = value
    return out


def _row_dicts(rows: Any) -> list[Mapping[str, Any]]:
    """Rows for :meth:`FeatureStore.push` from dicts, a DataFrame or an Arrow table."""
    if hasattr(rows, "to_pylist") and hasattr(rows, "schema"):  # pyarrow Table/RecordBatch
        return list(rows.to_pylist())
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas DataFrame
        frame = rows.astype(object).where(rows.notna(), None)
        return list(frame.to_dict(orient="records"))
    if isinstance(rows, Mapping | str | bytes):
        raise TypeError("push takes a list of row dicts, a pandas DataFrame or a pyarrow Table,"
                        f" not a {type(rows).__name__}")
    out = list(rows)
    for i, r in enumerate(out):
        if not isinstance(r, Mapping):
            raise TypeError(f"push row {i}: expected a dict of column values, got"
                            f" {type(r).__name__}")
    return out


def _json_default(value: Any) -> Any:
    """Datetimes (stdlib, pandas, numpy) as RFC 3339 text; numpy scalars as Python ones."""
    import datetime as _dt

    if hasattr(value, "isoformat") and isinstance(value, _dt.datetime | _dt.date):
        if isinstance(value, _dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
