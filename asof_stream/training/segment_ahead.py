"""The first row groups of a training set's first sealed segment, decoded in a thread
while the config is loaded (pydantic's imports and models hold the GIL for about 0.15 s;
decoding a 256k-row group takes Arrow about as long, without it).

Before the config is validated nothing is known for sure, so this is a guess from the raw
TOML (the offline log's path as ``[store] offline`` and the ``ASOF_`` overrides give it,
the first view named by the references and its features' names) and only a read: the
fast path takes a group (:func:`take`) only when it asks for the same file (path and
size, which the manifest registers for an immutable file), the same columns and the same
group, and reads it itself otherwise. A wrong guess costs the decoding, never an answer;
a failed one (no such file, another layout, an error) reads nothing.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa

from ..config import _env_overrides
from ..offline.log import open_log
from ..offline.manifest import has_manifest, list_segments
from ..offline.scan import BASE_COLUMNS
from ..offline.segments import SegmentGroups, column_name

#: row groups read ahead (those the fast path reads first; later ones it reads itself)
GROUPS = 2

_Key = tuple[str, int, tuple[str, ...], int]
_groups: dict[_Key, Future[pa.Table | None]] = {}
_guessed = threading.Event()
_threads: list[threading.Thread] = []


def read_ahead(config_path: str | os.PathLike[str], refs: Sequence[str], *,
               as_known_at: bool) -> None:
    """Start guessing and reading, in a thread (see the module doc)."""
    if _threads:
        return
    thread = threading.Thread(target=_run, args=(Path(config_path), list(refs), as_known_at),
                              name="asof-segment-ahead")
    _threads.append(thread)
    thread.start()


def take(path: Path, size: int, columns: Sequence[str],
         group: int) -> Future[pa.Table | None] | None:
    """The read of ``group`` of the segment at ``path`` (of ``size`` bytes) with these
    ``columns``, if it was started ahead (once: it is handed over); its result is None
    when that read failed (the taker reads the group itself, and says what is wrong)."""
    if not _threads:
        return None
    _guessed.wait()
    return _groups.pop((os.path.abspath(path), size, tuple(columns), group), None)


def forget() -> None:
    """Wait for the thread and drop what it read and nobody took."""
    for thread in _threads:
        thread.join()
    _groups.clear()
    _threads.clear()
    _guessed.clear()


def _run(config_path: Path, refs: list[str], as_known_at: bool) -> None:
    try:
        guess = _guess(config_path, refs, as_known_at)
        if guess is not None:
            _read(*guess)
    except Exception:  # noqa: BLE001 - a guess only: the fast path reads what it needs
        pass
    finally:
        _guessed.set()


def _guess(config_path: Path, refs: list[str],
           as_known_at: bool) -> tuple[Path, str, list[str]] | None:
    """(the offline log, the first view, the segment columns of its features), or None."""
    data, _ = _env_overrides(tomllib.loads(config_path.read_text(encoding="utf-8")))
    store, views = data.get("store"), data.get("views")
    if not isinstance(store, dict) or not isinstance(views, dict) or \
            store.get("shards") == "partition" or not isinstance(store.get("offline"), str):
        return None
    offline = Path(store["offline"]).expanduser()
    if not offline.is_absolute():
        offline = config_path.resolve().parent / offline
    pairs: dict[tuple[str, str], None] = {}
    for ref in (r.strip() for r in refs):
        view, _, feature = ref.partition(":")
        spec = views.get(view)
        if ref.startswith("@") or not isinstance(spec, dict) or \
                not isinstance(spec.get("features"), dict):
            return None
        for name in [feature] if feature else list(spec["features"]):
            pairs.setdefault((view, name), None)
    if not pairs or not offline.is_file():
        return None
    first = next(iter(pairs))[0]
    base = [c for c in BASE_COLUMNS if as_known_at or c != "ingest_ts"]
    return offline, first, [*base, *(column_name(f) for v, f in pairs if v == first)]


def _read(offline: Path, view: str, columns: list[str]) -> None:
    with open_log(offline, readonly=True) as log:
        if not has_manifest(log.conn):
            return
        segments = list_segments(log.conn, view)
        if not segments:
            return
        path, size = log.segments_dir / segments[0].file, segments[0].bytes
    groups = SegmentGroups(path, size, columns)
    picked = groups.groups[:GROUPS]
    futures: list[Future[pa.Table | None]] = [Future() for _ in picked]
    for g, future in zip(picked, futures, strict=True):
        _groups[(os.path.abspath(path), size, tuple(columns), g)] = future
    _guessed.set()
    for future, g in zip(futures, picked, strict=True):
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(groups.read(g))
        except Exception:  # noqa: BLE001 - the taker reads the group again
            future.set_result(None)
