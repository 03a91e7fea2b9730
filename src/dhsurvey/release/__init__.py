"""Release files: labelled Parquet, CSV, Stata and SPSS tables and a codebook.

Researchers open the releases in Stata, SPSS, R and pandas, so every file carries the labels and
missing-value conventions of the instruments (``docs/instruments.md``) from the one form model.
"""

from dhsurvey.release.codebook import build_codebook, write_codebook
from dhsurvey.release.labels import (
    ReleaseError,
    missing_codes,
    select_multiple_dummies,
    value_labels,
    variable_labels,
)
from dhsurvey.release.stream import ParquetAppender, write_from_parquet
from dhsurvey.release.writers import (
    ReleaseFiles,
    ReleaseWarning,
    write_csv,
    write_dta,
    write_parquet,
    write_release,
    write_sav,
)

__all__ = [
    "ParquetAppender",
    "ReleaseError",
    "ReleaseFiles",
    "ReleaseWarning",
    "build_codebook",
    "missing_codes",
    "select_multiple_dummies",
    "value_labels",
    "variable_labels",
    "write_codebook",
    "write_csv",
    "write_dta",
    "write_from_parquet",
    "write_parquet",
    "write_release",
    "write_sav",
]
