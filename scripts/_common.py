"""What the benchmark scripts share: the store/customer prelude of their configs and the
synthetic label file. Imported as ``_common`` (the scripts folder is on ``sys.path`` when a
script runs as ``python scripts/X.py``)."""

from __future__ import annotations

import csv
import random
import shutil
import sys
from pathlib import Path

#: The stores (relative to the config's folder) and the string-keyed customer entity.
PRELUDE = """\
[store]
offline = "data/offline.sqlite"
online = "sqlite:///data/online.sqlite"

[entities.customer]
join_keys = { customer_id = "string" }
"""
#: A raw-purchases project for the aggregation benchmarks, with ``{online}`` to format
#: (doubled braces: the text goes through ``str.format``).
PURCHASES = """[store]
offline = "data/offline.sqlite"
online = "{online}"

[entities.customer]
join_keys = {{ customer_id = "string" }}

[views.purchases]
entity = "customer"
features = {{ amount = "float64", category = "string" }}
"""
YEAR_START = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
YEAR_US = 365 * 86_400 * 1_000_000


def write_labels(path: Path, customers: int, m: int, seed: int) -> None:
    """``m`` labels (customer_id, event_timestamp, churned) over the year and ten days after,
    about 2% of them for customers that have no events."""
    from asof_stream.timestamps import to_iso

    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "event_timestamp", "churned"])
        for _ in range(m):
            c = rng.randrange(int(customers * 1.02) + 1)
            t = YEAR_START + rng.randrange(YEAR_US + 10 * 86_400 * 1_000_000)
            w.writerow([f"c{c:07d}", to_iso(t - t % 1_000_000), rng.randrange(2)])


def training_set_command(features: str) -> list[str]:
    """The ``asof-stream training-set`` run over ``labels.csv`` in the work folder (the
    console script beside this Python, else the one on PATH), writing ``out_asof.csv``."""
    exe = shutil.which("asof-stream", path=str(Path(sys.executable).parent)) or "asof-stream"
    return [exe, "training-set", "--config", "asof.toml", "--labels", "labels.csv",
            "--features", features, "--out", "out_asof.csv"]
