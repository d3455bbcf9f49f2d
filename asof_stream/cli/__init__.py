"""The ``asof-stream`` command line (contract section 10).

Each command lives in its own module and registers itself on :data:`main`.
"""

from __future__ import annotations

# Importing a command module registers its command(s) on ``main``.
from . import deadletters as _deadletters  # noqa: F401,E402  dead-letters
from . import demo as _demo  # noqa: F401,E402  demo
from . import drift as _drift  # noqa: F401,E402  drift
from . import features as _features  # noqa: F401,E402  features
from . import freshness as _freshness  # noqa: F401,E402  freshness
from . import ingest as _ingest  # noqa: F401,E402  replay
from . import leakage as _leakage  # noqa: F401,E402  leakage
from . import online as _online  # noqa: F401,E402  online, materialize
from . import project as _project  # noqa: F401,E402  init, validate
from . import retention as _retention  # noqa: F401,E402  retention
from . import run as _run  # noqa: F401,E402  run
from . import serve as _serve  # noqa: F401,E402  serve
from . import skew as _skew  # noqa: F401,E402  skew
from . import status as _status  # noqa: F401,E402  status
from . import training as _training  # noqa: F401,E402  training-set
from .common import main

__all__ = ["main"]
