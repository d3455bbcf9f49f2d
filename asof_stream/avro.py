"""Avro record values (fastavro): plain Avro binary with one schema, or the Confluent wire format.

A Kafka source with ``value_format = "avro"`` turns each value into the JSON object the
:class:`~asof_stream.events.EventDecoder` takes, so Avro events meet exactly the same
typing rules and dead letters as JSON ones. ``timestamp-millis`` / ``timestamp-micros``
fields arrive as UTC instants (written as RFC 3339 text, which the time rules accept);
plain numbers and strings follow the time rules as in JSON (numbers are epoch seconds).

Confluent wire format: byte 0 is the magic byte ``0``, bytes 1-4 the schema id (big
endian), then the Avro binary. Ids are mapped to ``.avsc`` files in the config; there
is no schema-registry client.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import msgspec
from fastavro.types import Schema

_encoder = msgspec.json.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AvroError(ValueError):
    """Why one value could not be decoded (becomes the dead letter's reason)."""


#: microseconds per unit of the logical timestamp types
_TS_UNITS = {"timestamp-micros": 1, "timestamp-millis": 1000}


def _raw_event_time(raw: dict[str, Any]) -> int | None:
    """Strip the logical type of a top-level ``event_timestamp`` (long) field, in place.

    fastavro then yields the plain count, which :func:`_event_time` turns into a value the
    time rules read exactly, without building and re-parsing a datetime per record.
    """
    for f in raw.get("fields", ()):
        t = f.get("type") if isinstance(f, dict) else None
        if f.get("name") == "event_timestamp" and isinstance(t, dict) \
                and t.get("type") == "long" and t.get("logicalType") in _TS_UNITS:
            f["type"] = "long"
            return _TS_UNITS[t["logicalType"]]
    return None


def _event_time(us: int) -> int | float | str:
    """Microseconds as epoch seconds (int or float) when that is exact, else RFC 3339 text."""
    if us % 1_000_000 == 0:
        return us // 1_000_000
    seconds = us / 1_000_000
    if round(seconds * 1_000_000) == us:
        return seconds
    try:
        return (_EPOCH + timedelta(microseconds=us)).isoformat()
    except OverflowError:
        return seconds  # outside the years 1 to 9999: the time rules say so


def load_schema(path: str) -> Schema:
    """Parse one ``.avsc`` file; a ValueError names the file and the problem."""
    return _load(path)[0]


def _load(path: str) -> tuple[Schema, int | None]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read Avro schema: {exc}") from None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: Avro schema is not JSON: {exc}") from None
    if not (isinstance(raw, dict) and raw.get("type") == "record"):
        raise ValueError(f"{path}: the Avro schema of an event must be a record")
    try:
        fastavro.parse_schema(raw)  # as written: a schema error names the real types
        unit = _raw_event_time(raw)
        schema = fastavro.parse_schema(raw)
    except Exception as exc:  # fastavro raises several types (SchemaParseException, ...)
        raise ValueError(f"{path}: not a valid Avro schema: {exc}") from None
    return schema, unit


def check_schema_files(one: str | None, by_id: dict[int, str] | None) -> None:
    for path in [one] if one is not None else list((by_id or {}).values()):
        assert path is not None
        load_schema(path)


def _read(schema: Schema, payload: bytes | memoryview) -> Any:
    buf = io.BytesIO(payload)
    try:
        obj = fastavro.schemaless_reader(buf, schema)
    except (EOFError, StopIteration):
        raise AvroError("Avro value is truncated (ends before the record does)") from None
    except Exception as exc:  # corrupt data: bad varints, invalid UTF-8, bad union index
        raise AvroError(f"Avro value does not decode: {type(exc).__name__}: {exc}") from None
    rest = len(payload) - buf.tell()
    if rest:
        raise AvroError(f"Avro value has {rest} bytes after the record (written with another"
                        " schema?)")
    return obj


class AvroValues:
    """Decodes one source's Avro values into JSON object bytes."""

    def __init__(self, schema: str | None = None, schemas: dict[int, str] | None = None) -> None:
        self.single = _load(schema) if schema is not None else None
        self.by_id = {sid: _load(p) for sid, p in (schemas or {}).items()}
        if self.single is None and not self.by_id:
            raise ValueError("an Avro source needs avro_schema or avro_schemas")

    def to_json(self, value: bytes) -> bytes:
        """The value as JSON bytes; :class:`AvroError` says why it cannot be."""
        if self.single is not None:
            schema, unit = self.single
            obj = _read(schema, value)
        else:
            if len(value) < 5 or value[0] != 0:
                raise AvroError("not in the Confluent wire format (magic byte 0 and a 4-byte"
                                f" schema id), {len(value)} bytes starting {value[:5].hex()}")
            sid = int.from_bytes(value[1:5], "big")
            known = self.by_id.get(sid)
            if known is None:
                raise AvroError(f"unknown Avro schema id {sid} (known: "
                                f"{', '.join(str(i) for i in sorted(self.by_id))})")
            schema, unit = known
            obj = _read(schema, memoryview(value)[5:])
        if unit is not None and isinstance(obj, dict):
            obj["event_timestamp"] = _event_time(obj["event_timestamp"] * unit)
        if isinstance(obj, dict) and any(v.__class__ is float and not math.isfinite(v)
                                         for v in obj.values()):
            # msgspec would write NaN/inf as null; the stdlib keeps them for the typing rules.
            return json.dumps(obj, default=str).encode()
        try:
            return _encoder.encode(obj)
        except (TypeError, OverflowError) as exc:
            raise AvroError(f"Avro record cannot be expressed as an event: {exc}") from None
