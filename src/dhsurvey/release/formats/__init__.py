"""The release file formats, each written from a release Parquet file a block of rows at a time.

:mod:`.parquet` appends the typed table (and reads it back by columns and blocks); :mod:`.csv`,
:mod:`.stata` and :mod:`.spss` each take whole-column decisions and then encode blocks of rows
with them, so their bytes do not depend on how the rows were blocked; :mod:`.readstat` holds
what the two pyreadstat formats share (template rows, scratch files, the header stamp).
"""
