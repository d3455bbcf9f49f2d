"""The record kept beside every training set file, so it can be rebuilt exactly later.

``train.parquet`` gets ``train.parquet.json``: the label file (path, size, SHA-256),
the timestamp column, the feature references as given and as resolved, the flags,
the definition (and its version) of every view used, the label count and the log's
``seq`` high-water mark. Rebuilding reads the same labels with the recorded
definitions against the log rows up to that mark, so the file comes out byte for byte
the same, even after the daemon has appended more rows or the ttl has changed in
``asof.toml``. Only ``asof-stream retention`` removing rows below the mark changes
what a rebuild can see: :func:`check_retention` finds such runs in the log's
``retention_runs`` and refuses, unless a partial rebuild is asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..definitions import Definitions
from ..timestamps import now_micros, parse_iso, to_iso
from ..transforms import module_digest
from ..transforms.training import input_pairs
from ..versions import aggregation_version, view_version

if TYPE_CHECKING:
    from ..offline.retention import RetentionRun

FORMAT = 1


class SidecarError(ValueError):
    """A sidecar that cannot be used for a rebuild; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelFile(_Strict):
    path: str
    bytes: int
    sha256: str
    rows: int
    timestamp_column: str


class Flags(_Strict):
    strict: bool
    as_known_at: bool
    full_feature_names: bool


class ViewRecord(_Strict):
    version: str
    definition: dict[str, Any]  # the FeatureView, as JSON
    entity: dict[str, Any]  # its Entity, as JSON


class TransformRecord(_Strict):
    definition: dict[str, Any]  # the Transform, as JSON
    module_sha256: str | None  # of its module file when built (None: not found)


class AggregationRecord(_Strict):
    version: str
    definition: dict[str, Any]  # the Aggregation, as JSON (windows in microseconds)


class Sidecar(_Strict):
    """What one training set was built from."""

    format: int
    asof_stream_version: str
    created_at: str
    output: str
    labels: LabelFile
    features: list[str]  # the references as given
    resolved: list[str]  # view:feature, in column order
    columns: list[str]
    flags: Flags
    high_water_seq: int
    #: with partition shards: each shard's high-water seq (high_water_seq is then 0)
    shard_high_water: dict[str, int] | None = None
    views: dict[str, ViewRecord]  # the views used, and the source views of aggregations
    aggregations: dict[str, AggregationRecord] = {}
    transforms: dict[str, TransformRecord] = {}

    def definitions(self, root: Path | None = None) -> Definitions:
        """The definitions of the views, aggregations and transforms used, as they were
        when the set was built; ``root``: the folder transform modules are found in."""
        entities: dict[str, Any] = {}
        views: dict[str, Any] = {}
        for name, rec in self.views.items():
            view = dict(rec.definition)
            for k in ("ttl", "freshness"):  # stored as microseconds
                if view.get(k) is not None:
                    view[k] = timedelta(microseconds=view[k])
            views[name] = view
            entities[rec.entity["name"]] = rec.entity
        aggregations: dict[str, Any] = {}
        for name, agg in self.aggregations.items():
            spec = dict(agg.definition)
            spec["features"] = [
                {**f, "window": None if f.get("window") is None
                 else timedelta(microseconds=f["window"])} for f in spec.get("features", [])]
            aggregations[name] = spec
        try:
            defs = Definitions.model_validate({
                "entities": entities, "views": views, "aggregations": aggregations,
                "transforms": {k: r.definition for k, r in self.transforms.items()}})
        except ValidationError as exc:
            raise SidecarError(f"recorded definitions do not load: {exc}") from None
        return defs.with_root(root)


def sidecar_path(out: str | os.PathLike[str]) -> Path:
    """Where the sidecar of a training set file lives."""
    return Path(f"{os.fspath(out)}.json")


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _package_version() -> str:
    """The package's version, from ``asof_stream.__version__`` (kept equal to the
    installed metadata's by a test; reading the metadata costs about 7 ms per run)."""
    from .. import __version__

    return __version__


def describe(defs: Definitions, *, out: str | os.PathLike[str], labels_path: str | os.PathLike[str],
             label_rows: int, timestamp_column: str, refs: list[str],
             pairs: list[tuple[str, str]], columns: list[str], strict: bool, as_known_at: bool,
             full_feature_names: bool, high_water_seq: int,
             shard_high_water: dict[str, int] | None = None,
             labels_digest: tuple[int, str] | None = None) -> Sidecar:
    """The sidecar of a training set just built from ``labels_path``.

    ``labels_digest``: :func:`file_digest` of the label file taken before it was read
    (default: hashed now).
    """
    size, digest = labels_digest or file_digest(labels_path)
    used = dict.fromkeys(v for v, _ in input_pairs(defs, pairs) if v not in defs.transforms)
    aggs = [v for v in used if defs.kind(v) == "aggregation"]
    used = dict.fromkeys([*(v for v in used if v not in aggs),
                          *(defs.aggregations[a].source for a in aggs)])
    views = {v: ViewRecord(version=view_version(defs, v),
                           definition=defs.views[v].model_dump(mode="json"),
                           entity=defs.entity_of(v).model_dump(mode="json"))
             for v in used}
    transforms = {t: TransformRecord(definition=defs.transforms[t].model_dump(mode="json"),
                                     module_sha256=module_digest(defs.root, defs.transforms[t]))
                  for t in dict.fromkeys(v for v, _ in pairs) if t in defs.transforms}
    return Sidecar(
        format=FORMAT, asof_stream_version=_package_version(),
        created_at=to_iso(now_micros()) or "", output=os.path.abspath(out),
        labels=LabelFile(path=os.path.abspath(labels_path), bytes=size, sha256=digest,
                         rows=label_rows, timestamp_column=timestamp_column),
        features=list(refs), resolved=[f"{v}:{f}" for v, f in pairs], columns=columns,
        flags=Flags(strict=strict, as_known_at=as_known_at,
                    full_feature_names=full_feature_names),
        high_water_seq=high_water_seq, shard_high_water=shard_high_water, views=views,
        transforms=transforms,
        aggregations={a: AggregationRecord(
            version=aggregation_version(defs, a),
            definition=defs.aggregations[a].model_dump(mode="json")) for a in aggs})


def write_sidecar(out: str | os.PathLike[str], sidecar: Sidecar) -> Path:
    """Write the sidecar beside ``out`` atomically; returns its path."""
    path = sidecar_path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(sidecar.model_dump(mode="json"), indent=2) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_sidecar(path: str | os.PathLike[str]) -> Sidecar:
    """Load and check a sidecar; errors name the file and the problem."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SidecarError(f"{p}: no such sidecar file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SidecarError(f"{p}: not a readable JSON sidecar: {exc}") from None
    if isinstance(data, dict) and data.get("format") not in (None, FORMAT):
        raise SidecarError(f"{p}: sidecar format {data.get('format')!r} is not supported"
                           f" (this version reads {FORMAT})")
    try:
        return Sidecar.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise SidecarError(f"{p}: not a training-set sidecar: {where}") from None


def check_labels(sidecar: Sidecar, labels_path: str | os.PathLike[str]) -> None:
    """The label file must be the one the set was built from."""
    try:
        size, digest = file_digest(labels_path)
    except OSError as exc:
        raise SidecarError(f"cannot read the recorded label file {labels_path}: {exc}") from None
    if (size, digest) != (sidecar.labels.bytes, sidecar.labels.sha256):
        raise SidecarError(f"label file {labels_path} changed since the training set was built"
                           f" (sha256 {digest[:12]}..., recorded {sidecar.labels.sha256[:12]}...)")


def retained_since(sidecar: Sidecar, conn: sqlite3.Connection,
                   upto_seq: int) -> list[RetentionRun]:
    """Retention runs on this log (``conn``) after the set was built that deleted rows it
    saw: rows of its views with a seq at most ``upto_seq`` (its mark on this log)."""
    from ..offline.retention import retention_runs  # only a rebuild reads the runs

    return retention_runs(conn, after=parse_iso(sidecar.created_at), upto_seq=upto_seq,
                          views=sorted(sidecar.views))


def changed_transforms(sidecar: Sidecar, root: Path | None) -> list[str]:
    """One line per transform whose module file differs from the one the set was built
    with (so a rebuild would run other code)."""
    out = []
    defs = sidecar.definitions(root)
    for name, rec in sidecar.transforms.items():
        now = module_digest(root, defs.transforms[name])
        if now != rec.module_sha256:
            module = defs.transforms[name].function.partition(":")[0]
            was = (rec.module_sha256 or "none")[:12]
            out.append(f"transform {name!r}: module {module!r} changed since the training set"
                          f" was built (sha256 {(now or 'missing')[:12]}..., recorded {was}...)")
    return out


def check_retention(path: str | os.PathLike[str], sidecar: Sidecar,
                    runs: list[RetentionRun]) -> None:
    """Refuse a rebuild that cannot see rows the original saw, naming the run."""
    if not runs:
        return
    more = f" and {len(runs) - 1} more run(s)" if len(runs) > 1 else ""
    raise SidecarError(
        f"{path}: cannot rebuild exactly: {runs[0].describe()}{more} after this training set"
        f" was built ({sidecar.created_at}), so the file would differ; pass --allow-partial"
        " to rebuild from the rows that remain")
