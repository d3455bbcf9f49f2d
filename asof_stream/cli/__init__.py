"""The ``asof-stream`` command line (docs/cli.md).

Each command lives in its own module, imported when the command is used
(:data:`~asof_stream.cli.common.COMMAND_MODULES`); importing it registers the command
on :data:`main`.

numpy's OpenBLAS is kept to one thread unless ``OPENBLAS_NUM_THREADS`` says otherwise:
at import it starts a thread per core, which cost 0.06 s of CPU per command on the
2-core machine measured (README "Performance"), and no command does linear algebra.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .common import main  # noqa: E402

__all__ = ["main"]
