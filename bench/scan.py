"""Benchmark: the release scan (``scan_release``) on a release folder of a million rows.

Builds a child-like table of N rows: ``record_id`` and ``hh_id`` as 16 hex digits (the
release IDs), stratum, psu, age, sex, weight and a free-text column, written as Parquet and
CSV, and N restricted instanceIDs (``uuid:…``). A few restricted values, a phone number and
an e-mail address are planted in the free text so there is something to find.

Times the scan as it was before it became set-based and streaming (one trie-shaped regex
over every restricted value, ``phonenumbers`` on every cell with seven digits, whole files
read at once; its code is read from git at ``OLD_REF``) on the first SUBSET rows with the
SUBSET instanceIDs of those rows, since at a million restricted values its regex alone
would not fit in memory; then the current scan on the same subset (the findings must be
equal) and on all N rows with N restricted values. Prints seconds and ratios.
Run: ``.venv/bin/python bench/scan.py [N] [SUBSET]`` (default 1,000,000 and 50,000).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.scan import scan_release

N = 1_000_000
SUBSET = 50_000
#: The last commit whose release.py held the scan before it was set-based.
OLD_REF = "3ba1efc"
ROOT = Path(__file__).resolve().parents[1]

WORDS = ("the child uses a phone at school home friends games video chat night weekend "
         "mother father sister brother teacher cousin online offline app message photo "
         "share stranger safe unsafe talk tell help worried happy sometimes often never "
         "always after before lunch class bus market church mosque football music").split()


def make_release(n: int, folder: Path, seed: int = 7) -> tuple[pd.DataFrame, list[str]]:
    """The child table of ``n`` rows (written as child.parquet and child.csv) and its
    instanceIDs, some of them planted in the free text."""
    rng = np.random.default_rng(seed)
    ids = [f"{v:016x}" for v in rng.integers(0, 2**63, n, dtype=np.int64)]
    households = [f"{v:016x}" for v in rng.integers(0, 2**63, n // 2 + 1, dtype=np.int64)]
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    hexes = [b.tobytes().hex() for b in raw]
    keys = [f"uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]
    words = np.asarray(WORDS, dtype=object)
    picks = rng.integers(0, len(WORDS), (n, 6))
    text = [" ".join(row) for row in words[picks]]
    text = [t if r > 0.3 else None for t, r in zip(text, rng.random(n), strict=True)]
    for row, leak in ((n // 7, keys[n // 7]), (n // 3, "call +254 712 34 5678 tomorrow"),
                      (n // 2, "write to canary.4821@example.org"), (n - 1, keys[5])):
        text[row] = f"note: {leak}"
    table = pd.DataFrame({
        "record_id": pd.array(ids, dtype="string"),
        "hh_id": pd.array([households[i] for i in rng.integers(0, len(households), n)],
                          dtype="string"),
        "stratum": rng.integers(1, 25, n), "psu": rng.integers(1, 900, n),
        "age_now": rng.integers(12, 18, n), "child_sex": rng.integers(1, 3, n),
        "devices_oth": pd.array(text, dtype="string"),
        "weight": rng.lognormal(3.0, 0.5, n),
    })
    folder.mkdir(parents=True, exist_ok=True)
    table.to_parquet(folder / "child.parquet")
    table.to_csv(folder / "child.csv", index=False)
    return table, keys


def old_scan() -> Any:
    """``scan_release`` as it was at ``OLD_REF`` (its section of release.py, run alone)."""
    source = subprocess.run(["git", "show", f"{OLD_REF}:src/dhsurvey/anonymise/release.py"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    body = source[source.index("EMAIL_RE = "):re.search(r"\n# -+ gate\n", source).start()]
    module = types.ModuleType("old_scan")
    sys.modules["old_scan"] = module  # dataclasses look their module up
    prelude = ("from __future__ import annotations\nimport csv, io, math, re\n"
               "import datetime as dt\nfrom collections.abc import Iterable\n"
               "from dataclasses import dataclass, field\nfrom pathlib import Path\n"
               "from typing import Any\nimport numpy as np\nimport pandas as pd\n"
               "from dhsurvey.errors import DhsurveyError\n")
    exec(compile(prelude + body, f"{OLD_REF}:release.py", "exec"), module.__dict__)
    return module.scan_release


def timed(work: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = work()
    return time.perf_counter() - start, out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    subset = min(int(sys.argv[2]) if len(sys.argv) > 2 else SUBSET, n)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        table, keys = make_release(n, Path(tmp) / "full")
        make_release(subset, Path(tmp) / "subset")
        print(f"release folder: {n:,} rows as Parquet and CSV "
              f"({sum(p.stat().st_size for p in (Path(tmp) / 'full').iterdir()) / 1e6:.0f} MB), "
              f"{n:,} restricted instanceIDs; built in {time.perf_counter() - start:.0f} s")
        del table
        small = [Path(tmp) / "subset" / f for f in ("child.parquet", "child.csv")]
        small_keys = keys[:subset]
        old_s, old_found = timed(lambda: old_scan()(small, small_keys))
        new_s, new_found = timed(lambda: scan_release(small, small_keys))
        assert new_found == old_found, "the two scans disagree"
        print(f"{subset:>9,} rows, {subset:,} restricted: before {old_s:7.2f} s, "
              f"now {new_s:6.2f} s: {old_s / new_s:5.0f}x faster "
              f"({len(new_found)} findings, the same)")
        full = [Path(tmp) / "full" / f for f in ("child.parquet", "child.csv")]
        full_s, found = timed(lambda: scan_release(full, keys))
        kinds = sorted({f["kind"] for f in found})
        print(f"{n:>9,} rows, {n:,} restricted: now {full_s:6.2f} s "
              f"({len(found)} findings: {', '.join(kinds)}); "
              f"before, scaled by rows from the subset: ~{old_s * n / subset:,.0f} s "
              f"(~{old_s * n / subset / full_s:,.0f}x)")


if __name__ == "__main__":
    main()
