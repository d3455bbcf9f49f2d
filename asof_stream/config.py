"""Loading ``asof.toml``: parse, validate, resolve paths, report errors by file and field.

pydantic and the definitions' models are imported when a file is first validated, not
with this module: ``training-set`` starts reading its labels in a thread before that
(:func:`~asof_stream.training.label_scan.scan_ahead`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config_errors import EnvPaths
    from .definitions import Definitions

DEFAULT_CONFIG = "asof.toml"
ENV_PREFIX = "ASOF_"


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, field and problem."""


@dataclass(frozen=True)
class Config:
    """Validated definitions plus where the file lives (relative paths start there)."""

    path: Path
    defs: Definitions

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.root / q

    @property
    def offline_path(self) -> Path:
        """The one offline log file; a ConfigError when the log is split into shards."""
        if self.defs.store.shards == "partition":
            raise ConfigError(
                f"{self.path}: store.shards = 'partition' keeps one log per Kafka partition"
                f" under {self.resolve(self.defs.store.offline).with_suffix('.shards')}; this"
                " command reads a single log (over shards: run, status, training-set, rebuild, replay,"
                " retention, dead-letters, leakage, skew, drift, online, materialize, serve)")
        return self.resolve(self.defs.store.offline)

    @property
    def online_url(self) -> str:
        """The online store URL with a relative sqlite path made absolute."""
        url = self.defs.store.online
        if url.startswith("sqlite:///"):
            return "sqlite:///" + str(self.resolve(url[len("sqlite:///") :]))
        return url


def _env_overrides(data: dict[str, Any]) -> tuple[dict[str, Any], EnvPaths]:
    """``ASOF_STORE__ONLINE=redis://...`` overrides ``[store] online``; ``__`` separates levels.
    Also returns which key each variable set, so an error names the variable."""
    applied: EnvPaths = {}
    for key, value in os.environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node[path[-1]] = _env_value(value)
            applied[tuple(path)] = (key, value)
    return data, applied


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_config(text: str, path: Path) -> Config:
    """Validate TOML text as if read from ``path``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    data, env = _env_overrides(data)
    from pydantic import ValidationError

    from .config_errors import format_validation_error
    from .definitions import Definitions

    try:
        defs = Definitions.model_validate(data, context={"root": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Definitions, data, path, env)) from None
    return Config(path=path.resolve(), defs=defs.with_root(path.resolve().parent))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file (default ``./asof.toml``)."""
    p = Path(path if path is not None else DEFAULT_CONFIG)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (create one with 'asof-stream init')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    return parse_config(text, p)
