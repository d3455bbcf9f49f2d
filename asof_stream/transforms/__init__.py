"""On-demand transforms: a Python function over features and request-time values.

:mod:`.loader` finds and imports the function (the module file beside ``asof.toml``),
:mod:`.apply` calls it and checks what it returns, :mod:`.training` runs it over a
training set's columns and :mod:`.online` per online read. One function, one check,
in both places (docs/computed.md, "Transforms").
"""

from __future__ import annotations

from .apply import RequestValueError, TransformError, apply, request_column, request_names
from .loader import load_function, module_digest, module_file

__all__ = ["TransformError", "RequestValueError", "apply", "request_column", "request_names",
           "load_function", "module_digest", "module_file"]
