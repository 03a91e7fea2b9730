"""Regenerate tests/r/expected/: R's output on the release that
the tests' shared demo run builds (tests/demo_run.py: KEN, TZA and UGA simulated by
``dhsurvey demo --households 450`` with a fixed pseudonym key, run through the pipeline and
pooled), for a reader to see what R gave and for the test to notice when the published
numbers move.

Run from the repository root when a change is meant to move them:

    .venv/bin/python tests/r/regenerate.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "pipelines")]


def main() -> None:
    from rsurvey import EXPECTED, FOLDERS, run_r
    from workbooks import instruments_with_budget

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The pipeline tests' instruments (tests/pipelines/conftest.py).
        os.environ["DHSURVEY_INSTRUMENTS"] = str(
            instruments_with_budget(root / "instruments", 1.0))
        from test_pooled_asset import build

        build(root / "data", root / "home")
        for folder in FOLDERS:
            out = EXPECTED / folder.replace("/", "_")
            shutil.rmtree(out, ignore_errors=True)
            run_r(root / "data" / folder, out)
            print("wrote", out)


if __name__ == "__main__":
    main()
