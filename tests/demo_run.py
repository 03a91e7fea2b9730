"""The README's demo, run once per test session and shared by the tests that need a pipeline
run: the demo's own test (tests/test_demo.py), the pooled release and R's reproduction of it
(tests/pipelines/test_pooled_asset.py), the Dagster UI in a browser
(tests/pipelines/test_ui_browser.py) and the killed-then-rerun comparison
(tests/pipelines/test_rerun.py).

``dhsurvey demo --households 450`` on its three countries (KEN, TZA, UGA: every fault kind,
encrypted device exports, both landing formats), run as a reader runs it, in a process of its
own, with the study's instruments at an unbounded suppression budget (tests/workbooks.py): a
few hundred households per country are too few children per stratum for the study's 5 %. The
reports URL (:data:`pipelines.reports.REPORTS_URL_ENV`) points at a port chosen beforehand,
where the UI test serves the reports the run links to.

The shared run is read only: a test that changes files works on a copy in its own tmp_path.

The demo makes its throwaway keys under ``DATA/secrets/`` and reuses ones already there. The
pseudonym key is written there beforehand, a fixed one, because it seeds the release's fresh
IDs and masked variance units (:func:`dhsurvey.study.release_rng`): with it fixed the releases
are the same in every session, and R's stored output (tests/r/expected/, written by
tests/r/regenerate.py from this run) can be compared. The private key and the key for
encryption at rest are the demo's own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Households per country: enough for every stage, small enough for a test.
HOUSEHOLDS = 450

#: The pseudonym key written into the demo's secrets before it runs (see the module's note).
PSEUDONYM_KEY = "accee70b0b449abe7272bd14aed2ca765a51454a821d4f61cf0b89442fba51c1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class DemoRun:
    """Where the demo wrote, what it printed, and the keys it used."""

    data: Path  #: the data root (``--out``)
    home: Path  #: DAGSTER_HOME of its runs
    instruments: Path  #: the instruments folder (``--instruments``)
    result: Outcome  #: the command's exit code and output
    reports_port: int  #: the port the runs' report links point at

    @property
    def output(self) -> str:
        return self.result.output

    @property
    def countries(self) -> tuple[str, ...]:
        from dhsurvey.demo import DEMO_COUNTRIES

        return DEMO_COUNTRIES

    @property
    def secrets(self) -> Path:
        return self.data / "secrets"

    @property
    def private_key(self) -> Path:
        return self.secrets / "demo-private.pem"

    @property
    def pseudonym_key(self) -> Path:
        return self.secrets / "demo-pseudonym.key"

    @property
    def at_rest_key(self) -> Path:
        return self.secrets / "demo-at-rest.key"

    @property
    def reports_url(self) -> str:
        return f"http://127.0.0.1:{self.reports_port}"

    def reads_like(self, instruments: Path) -> bool:
        """Whether ``instruments`` holds the same files as the run's (a worker of the test
        session that did not run the demo has its own copy of the same instruments)."""
        import hashlib

        def files(folder: Path) -> dict[str, str]:
            return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in sorted(folder.rglob("*")) if p.is_file()}

        return self.instruments == instruments or files(self.instruments) == files(instruments)

    def checked(self) -> DemoRun:
        """The run, once it is known to have succeeded (for tests that build on it)."""
        assert self.result.exit_code == 0, self.output
        return self

    def key_env(self) -> dict[str, str]:
        """The demo's keys as a process reading its zones gets them: the at-rest and
        pseudonym keys' text, the private key's path."""
        from dhsurvey.io import AT_REST_KEY_ENV

        return {AT_REST_KEY_ENV: self.at_rest_key.read_text().strip(),
                "DHSURVEY_PSEUDONYM_KEY": self.pseudonym_key.read_text().strip(),
                "DHSURVEY_PRIVATE_KEY": str(self.private_key)}

    @contextmanager
    def keys_in_env(self) -> Iterator[None]:
        """:meth:`key_env` in this process's environment for the block."""
        import pytest

        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.key_env().items():
                patch.setenv(name, value)
            yield


def run_demo(instruments: Path, data: Path, home: Path,
             reports_port: int | None = None) -> DemoRun:
    """``dhsurvey demo --out data --households 450 --instruments instruments`` as a process of
    its own, as a reader runs the command, its runs in ``home``, the fixed pseudonym key in
    place first.

    A process of its own rather than the command invoked inside the test runner: the demo's
    forked country workers then run at the depth of the command's own call stack, not below
    the test runner's. Under pytest they took 1.5 million page faults more (CPython 3.11 maps
    and unmaps its frame-stack chunks when a hot call straddles a chunk's end, which depends
    on the depth), 10 s more system time, which a reader's run never pays."""
    import subprocess
    import sys

    from dhsurvey.io import AT_REST_KEY_ENV, atomic_write_text
    from pipelines.reports import REPORTS_URL_ENV

    port = reports_port or free_port()
    key = data / "secrets" / "demo-pseudonym.key"
    atomic_write_text(key, PSEUDONYM_KEY + "\n")
    key.chmod(0o600)
    env = {**os.environ, "DAGSTER_HOME": str(home), REPORTS_URL_ENV: f"http://127.0.0.1:{port}"}
    # Unset: the demo makes its own throwaway key for encryption at rest.
    env.pop(AT_REST_KEY_ENV, None)
    env.pop("DHSURVEY_PSEUDONYM_KEY", None)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dhsurvey")), "demo", "--out", str(data),
         "--households", str(HOUSEHOLDS), "--instruments", str(instruments)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    return DemoRun(data=data, home=home, instruments=instruments,
                   result=Outcome(done.returncode, done.stdout), reports_port=port)


@dataclass(frozen=True)
class Outcome:
    """The demo command's exit code and output, as a worker that did not run it reads them."""

    exit_code: int
    output: str


def shared_demo(root: Path, instruments: Path) -> DemoRun:
    """The demo's run under ``root``, made by whichever pytest-xdist worker asks first (under
    a file lock) and read by the others: the tests reading it may run on any worker."""
    import json

    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    record = root / "run.json"
    with FileLock(str(root / ".lock")):
        if not record.exists():
            run = run_demo(instruments, root / "data", root / "dagster_home")
            record.write_text(json.dumps({
                "instruments": str(run.instruments), "exit_code": run.result.exit_code,
                "output": run.result.output, "reports_port": run.reports_port}))
        saved = json.loads(record.read_text())
    return DemoRun(data=root / "data", home=root / "dagster_home",
                   instruments=Path(saved["instruments"]),
                   result=Outcome(saved["exit_code"], saved["output"]),
                   reports_port=saved["reports_port"])


__all__ = ["HOUSEHOLDS", "PSEUDONYM_KEY", "DemoRun", "Outcome", "free_port", "run_demo",
           "shared_demo"]
