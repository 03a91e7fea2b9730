"""Resources: where instruments and data zones live, configurable from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class StudyPaths(dg.ConfigurableResource):
    """Instrument folder and data root (``landing/``, ``raw/``, ``clean/``, ``release/``)."""

    instruments: str = "instruments"
    data_root: str = "data"

    @classmethod
    def from_env(cls) -> StudyPaths:
        return cls(
            instruments=dg.EnvVar("DHSURVEY_INSTRUMENTS").get_value("instruments"),
            data_root=dg.EnvVar("DHSURVEY_DATA").get_value("data"),
        )

    @property
    def build_dir(self) -> Path:
        return Path(self.data_root) / "build"
