"""Resources: where instruments and data zones live, and the secrets, from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class StudyPaths(dg.ConfigurableResource):
    """Instrument folder and data root (``landing/``, ``raw/``, ``clean/``, ``release/``)."""

    instruments: str = "instruments"
    data_root: str = "data"
    #: Names this release; release IDs are fresh for every label, stable for reruns of one.
    release_label: str = "r1"

    @classmethod
    def from_env(cls) -> StudyPaths:
        return cls(
            instruments=dg.EnvVar("DHSURVEY_INSTRUMENTS").get_value("instruments"),
            data_root=dg.EnvVar("DHSURVEY_DATA").get_value("data"),
        )

    @property
    def build_dir(self) -> Path:
        return Path(self.data_root) / "build"

    def zone(self, name: str, country: str | None = None) -> Path:
        path = Path(self.data_root) / name
        return path / country if country else path


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
