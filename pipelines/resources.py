"""Resources: the data store and the secrets, from the environment; the run tag and the
instance settings that keep a country's runs one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from dhsurvey.store import Store
from pipelines.reports import DEFAULT_REPORTS_URL, REPORTS_URL_ENV, report_page

#: Tag of every run the landing sensor starts: the country whose landing folder it reads.
COUNTRY_TAG = "dhsurvey/country"

#: ``dagster.yaml`` of a DAGSTER_HOME that ``dhsurvey ui`` creates. Two runs of one country
#: at once would write the same raw/ and clean/ files, so the run queue (the default
#: QueuedRunCoordinator, dequeued by the daemon ``dagster dev`` starts) holds a country's
#: second run until its first ends: per ``dagster/partition`` (the tag Dagster puts on every
#: partitioned run: launched from the UI, a backfill or the sensor) and per :data:`COUNTRY_TAG`.
#: Other countries' runs, the forms and the pooled release are not held. No pop-up, no
#: telemetry.
INSTANCE_SETTINGS: dict[str, Any] = {
    "nux": {"enabled": False},
    "telemetry": {"enabled": False},
    "concurrency": {"runs": {"tag_concurrency_limits": [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        {"key": COUNTRY_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    ]}},
}


class StudyPaths(dg.ConfigurableResource):
    """The instrument folder and the data store (:class:`~dhsurvey.store.Store`, which owns
    the zones and file names under ``data_root``)."""

    instruments: str = "instruments"
    data_root: str = "data"
    #: Names this release; release IDs are fresh for every label, stable for reruns of one.
    release_label: str = "r1"
    #: Validate every country in batches of this many households (0: by size).
    batch_households: int = 0
    #: Where ``dhsurvey ui`` serves the clean-zone reports (:mod:`pipelines.reports`); asset
    #: metadata links there.
    reports_url: str = DEFAULT_REPORTS_URL

    @classmethod
    def from_env(cls) -> StudyPaths:
        return cls(
            instruments=dg.EnvVar("DHSURVEY_INSTRUMENTS").get_value("instruments"),
            data_root=dg.EnvVar("DHSURVEY_DATA").get_value("data"),
            reports_url=dg.EnvVar(REPORTS_URL_ENV).get_value(DEFAULT_REPORTS_URL),
        )

    @property
    def store(self) -> Store:
        return Store(Path(self.data_root), self.release_label)

    def report_url(self, iso: str) -> str:
        """The country's fieldwork quality report as ``dhsurvey ui`` serves it."""
        return f"{self.reports_url.rstrip('/')}/{report_page(iso)}"


class Secrets(dg.ConfigurableResource):
    """Secrets by reference only: a key's *path* or the *name* of the variable holding it,
    never its contents (resource config is shown in the UI)."""

    private_key_path: str | None = None
    pseudonym_key_env: str = "DHSURVEY_PSEUDONYM_KEY"

    @classmethod
    def from_env(cls) -> Secrets:
        return cls(private_key_path=dg.EnvVar("DHSURVEY_PRIVATE_KEY").get_value())

    def private_key(self) -> bytes | None:
        if not self.private_key_path:
            return None
        from dhsurvey.ingest.decrypt import load_private_key

        return load_private_key(self.private_key_path)

    def pseudonym_key(self) -> bytes:
        """The HMAC key; a clear error (no value echoed) when the variable is missing."""
        from dhsurvey.anonymise.pseudonym import load_key

        return load_key(self.pseudonym_key_env)
