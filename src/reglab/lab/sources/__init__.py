"""Data sources of the lab's ``[data]`` table: the user's own files, one module per format.

A format is a registered frozen table (:data:`FORMATS`) that reads its files into arrays;
checking, label encoding, the seeded stratified test split and the typed result are common.
Two calls take a ``[data]`` table to tensors, both raising
:class:`~reglab.lab.settings.schema.StudyError` with the key path of the culprit::

    source = parse_source(raw_data, "mystudy.data", root=study_folder, ignore=lab_keys)
    data = load_source(source, "mystudy.data")  # SourceData: x_train, y_train, x_test, ...

``describe(file_or_study)`` is ``reglab data inspect``: a printable :class:`Summary`.

>>> sorted(FORMATS)
['csv', 'hf', 'images', 'npy', 'npz', 'parquet']
"""

from reglab.lab.sources._base import FORMATS, Source, SourceData
from reglab.lab.sources._load import load_source, parse_source
from reglab.lab.sources.csvfile import CsvSource
from reglab.lab.sources.hf import HFSource
from reglab.lab.sources.images import ImageSource
from reglab.lab.sources.npy import NpySource
from reglab.lab.sources.npz import NpzSource
from reglab.lab.sources.parquet import ParquetSource
from reglab.lab.sources.summary import Summary, describe, infer_format

__all__ = [
    "FORMATS",
    "CsvSource",
    "HFSource",
    "ImageSource",
    "NpySource",
    "NpzSource",
    "ParquetSource",
    "Source",
    "SourceData",
    "Summary",
    "describe",
    "infer_format",
    "load_source",
    "parse_source",
]
