"""Finding and importing a transform's function (``module:function``).

The module is a file beside ``asof.toml``: ``features_py:churn_risk`` is
``features_py.py`` in the config's folder (dots name sub-folders: ``lib.feats`` is
``lib/feats.py``; a package folder's ``__init__.py`` works too). It is loaded by file
path under a private module name, so two projects' ``features_py`` never mix in one
process, and ``sys.path`` is left as it was (the config's folder is on it only while
the module's top level runs, so it can import a helper module beside it). The module
runs again when its file's content changes (checked at each use, by SHA-256).
Definitions built in Python, with no ``asof.toml``, import the module from
``sys.path`` as usual.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..definitions import Transform
from .errors import TransformError

_cache: dict[Path, tuple[str, ModuleType]] = {}  # by file: its SHA-256, the module


def module_file(root: Path, module: str) -> Path:
    """The file a transform module names, under the config's folder ``root``."""
    base = root.joinpath(*module.split("."))
    plain = base.with_name(base.name + ".py")
    package = base / "__init__.py"
    return package if not plain.is_file() and package.is_file() else plain


def module_digest(root: Path | None, transform: Transform) -> str | None:
    """SHA-256 of the transform's module file (None without a config folder or a file)."""
    if root is None:
        return None
    path = module_file(root, transform.function.partition(":")[0])
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _load_file(name: str, module: str, path: Path, root: Path) -> ModuleType:
    try:
        stamp = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise TransformError(f"transform {name!r}: module {module!r} not found: no file {path}"
                             " (transform modules live beside asof.toml)") from None
    hit = _cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    private = "_asof_transform_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(private, path)
    if spec is None or spec.loader is None:
        raise TransformError(f"transform {name!r}: cannot load module {module!r} from {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 -- any failure of user code is named, not raised raw
        raise TransformError(f"transform {name!r}: module {module!r} ({path}) does not import:"
                             f" {type(exc).__name__}: {exc}") from None
    finally:
        try:
            sys.path.remove(str(root))
        except ValueError:
            pass
    _cache[path] = (stamp, mod)
    return mod


def load_function(root: Path | None, transform: Transform) -> Callable[[dict[str, list[Any]]],
                                                                        Any]:
    """The transform's function; a :class:`TransformError` naming the transform and the
    module (or function) when it cannot be had."""
    module, _, func = transform.function.partition(":")
    if root is not None:
        mod = _load_file(transform.name, module, module_file(root, module), root)
        where = f"module {module!r} ({module_file(root, module)})"
    else:
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001
            raise TransformError(f"transform {transform.name!r}: module {module!r} does not"
                                 f" import: {type(exc).__name__}: {exc}") from None
        where = f"module {module!r}"
    fn = getattr(mod, func, None)
    if fn is None:
        raise TransformError(f"transform {transform.name!r}: {where} has no function {func!r}")
    if not callable(fn):
        raise TransformError(f"transform {transform.name!r}: {module}:{func} is not a function"
                             f" (it is a {type(fn).__name__})")
    return fn
