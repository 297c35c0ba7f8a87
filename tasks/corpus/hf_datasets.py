"""Hugging Face datasets as corpus documents: load_dataset or load_from_disk, offline, read in Arrow batches."""

from __future__ import annotations

import glob
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.clean.steps import Document
from tasks.corpus.local_files import file_mtime
from tasks.errors import InputError

if TYPE_CHECKING:  # datasets is imported only when a Hugging Face source is read (offline mode must come first)
    from datasets import Dataset, IterableDataset

logger = logging.getLogger(__name__)

# Offline: a local folder, local data files, or a dataset already in the local cache.

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # read by huggingface_hub and datasets at import time
_SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")  # what Dataset(Dict).save_to_disk writes at the top
_VALID_HF_SOURCES = ("valid: from_disk = a folder written by save_to_disk; or name = a local dataset folder, a "
                     "packaged builder (json, csv, parquet, text, arrow) with data_files, or a hub dataset id "
                     "already in the local Hugging Face cache (with streaming = false)")


class HuggingFaceSource(BaseModel):
    """One Hugging Face dataset split as a corpus source, read offline in batches."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str | None = None
    """load_dataset's path: a local dataset folder, a packaged builder ('json', 'parquet', ...) or a cached hub id."""
    config: str | None = None
    """load_dataset's configuration name (e.g. 'en' for allenai/c4); None for the default."""
    data_files: list[str] = Field(default=[])
    """Glob patterns of local data files for a packaged builder (load_dataset's data_files)."""
    data_dir: str | None = None
    """load_dataset's data_dir: a subfolder of the dataset holding the files."""
    from_disk: str | None = None
    """A folder written by Dataset.save_to_disk or DatasetDict.save_to_disk (load_from_disk), instead of name."""
    split: str = Field(default="train", min_length=1)
    """The split to read (ignored for a from_disk folder holding a single Dataset, but named in synthetic urls)."""
    streaming: bool = True
    """Read data files lazily, writing no Arrow cache; false loads through the cache (a cached hub id needs it)."""
    text_column: str = Field(default="text", min_length=1)
    """Column holding the document text; rows whose text is null are skipped."""
    url_column: str | None = None
    """Column holding the document url; None (or a null value) gives hf://LABEL/SPLIT/ROW_INDEX."""
    title_column: str | None = None
    """Column holding the document title; None for no titles."""
    label: str | None = Field(default=None, min_length=1)
    """Name in synthetic urls; default: the from_disk or local folder's name, the first data file's name, or name."""
    max_rows: int | None = Field(default=None, ge=1)
    """Read at most this many rows from the start of the split; None reads all."""
    batch_size: int = Field(default=1_000, ge=1)
    """Rows per Arrow batch turned into documents: memory holds one batch, never the split."""

    @model_validator(mode="after")
    def _one_location(self) -> HuggingFaceSource:
        problems = []
        if (self.name is None) == (self.from_disk is None):
            problems.append(f"set exactly one of name and from_disk (got name={self.name!r}, "
                            f"from_disk={self.from_disk!r}); {_VALID_HF_SOURCES}")
        if self.from_disk is not None:
            folder = Path(self.from_disk)
            if not any((folder / marker).is_file() for marker in _SAVED_DATASET_FILES):
                problems.append(f"from_disk {self.from_disk!r} is not a folder written by save_to_disk "
                                f"(no {' or '.join(_SAVED_DATASET_FILES)} in it)")
            if self.data_files or self.data_dir or self.config:
                problems.append("config, data_files and data_dir apply to name (load_dataset), not to from_disk")
        problems += [f"data_files pattern {p!r} matches no file" for p in self.data_files
                     if not any(Path(f).is_file() for f in glob.glob(p, recursive=True))]
        if self.data_dir is not None and "://" in self.data_dir:
            problems.append(f"data_dir {self.data_dir!r} must be a local folder: nothing is downloaded")
        if problems:
            raise InputError("; ".join(problems))
        return self

    @property
    def display_name(self) -> str:
        """How errors and synthetic urls name this dataset."""
        if self.label:
            return self.label
        if self.from_disk is not None:
            return Path(self.from_disk).name
        if self.data_files:
            first = sorted(glob.glob(self.data_files[0], recursive=True))
            return Path(first[0]).name if first else str(self.name)
        return Path(str(self.name)).name if Path(str(self.name)).is_dir() else str(self.name)


def offline_datasets() -> ModuleType:
    """The datasets module, imported in offline mode so nothing is ever downloaded."""
    if "datasets" not in sys.modules:
        for variable in _OFFLINE_ENV:
            os.environ[variable] = "1"
    import datasets  # imported here: only a corpus with Hugging Face sources pays for it

    return datasets


def _is_local(source: HuggingFaceSource) -> bool:
    """Whether the dataset is read from local files only: a from_disk folder, a packaged builder or a local folder."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return source.from_disk is not None or source.name in _PACKAGED_DATASETS_MODULES or Path(source.name).exists()


def _source_files(source: HuggingFaceSource) -> list[Path]:
    """The local files the dataset is read from (for fetched_at); empty for a dataset in the hub cache."""
    if source.data_files:
        return [Path(f) for p in source.data_files for f in glob.glob(p, recursive=True) if Path(f).is_file()]
    if source.from_disk is not None:
        folder = Path(source.from_disk)
    elif Path(str(source.name)).is_dir():
        folder = Path(str(source.name)) / (source.data_dir or "")
    else:
        folder = Path(source.data_dir or str(source.name))  # a packaged builder reading data_dir
    return [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []


def load_hf_split(source: HuggingFaceSource) -> Dataset | IterableDataset:
    """The split as a datasets (Iterable)Dataset, loaded offline; a failure raises ValueError naming the dataset."""
    datasets = offline_datasets()
    where = f"Hugging Face dataset {source.display_name!r}"
    if not datasets.config.HF_HUB_OFFLINE and not _is_local(source):
        raise InputError(f"{where}: datasets was imported before offline mode could be set, so a hub id could be "
                         f"downloaded; set HF_HUB_OFFLINE=1 to read it from the local cache; {_VALID_HF_SOURCES}")
    try:
        if source.from_disk is not None:
            loaded = datasets.load_from_disk(source.from_disk)
            if isinstance(loaded, datasets.DatasetDict):
                if source.split not in loaded:
                    raise InputError(f"no split {source.split!r} (splits: {', '.join(loaded)})")
                loaded = loaded[source.split]
            return loaded
        return datasets.load_dataset(source.name, source.config, data_dir=source.data_dir,
                                     data_files=source.data_files or None, split=source.split,
                                     streaming=source.streaming)
    except Exception as exc:  # datasets raises many types (and StopIteration for empty data files)
        raise InputError(f"{where} cannot be loaded ({type(exc).__name__}: {exc}); {_VALID_HF_SOURCES}") from exc


def _columns(split: Dataset | IterableDataset, source: HuggingFaceSource) -> list[str]:
    """The columns to read; raises ValueError naming any configured column the dataset lacks."""
    wanted = [c for c in (source.text_column, source.url_column, source.title_column) if c is not None]
    available = split.column_names  # None for a streamed dataset whose features are unknown until read
    missing = [c for c in wanted if available is not None and c not in available]
    if missing:
        raise InputError(f"Hugging Face dataset {source.display_name!r}: no column {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(available)})")
    return list(dict.fromkeys(wanted))


def _cell(batch: dict[str, list], column: str | None, row: int, where: str) -> str | None:
    if column is None:
        return None
    value = batch[column][row]
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: column {column!r} must hold strings, got {type(value).__name__}")
    return value


def read_hf_dataset(source: HuggingFaceSource) -> Iterator[Document]:
    """One document per row with a non-null text, in split order; fetched_at is the newest source file's mtime."""
    split = load_hf_split(source)
    columns = _columns(split, source)
    files = _source_files(source) or [Path(f["filename"]) for f in getattr(split, "cache_files", [])]
    fetched_at = max(map(file_mtime, files)) if files else datetime.now(UTC)  # a streamed hub-cache dataset has no files
    prefix = f"hf://{source.display_name}/{source.split}"
    index = 0  # row index in the split, counting skipped rows, so synthetic urls are stable
    for batch in split.select_columns(columns).iter(batch_size=source.batch_size):
        for row in range(len(batch[source.text_column])):
            if source.max_rows is not None and index >= source.max_rows:
                return
            where = f"{prefix}/{index}"
            text = _cell(batch, source.text_column, row, where)
            if text is not None:
                yield Document(url=_cell(batch, source.url_column, row, where) or where, source="hf",
                               title=_cell(batch, source.title_column, row, where), text=text, fetched_at=fetched_at)
            index += 1


def read_hf_datasets(sources: Iterable[HuggingFaceSource]) -> Iterator[Document]:
    """Documents from every configured Hugging Face dataset, in order."""
    for source in sources:
        yield from read_hf_dataset(source)
