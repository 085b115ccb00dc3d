"""Parquet worklists: the CSV layout in a columnar file or a dataset of files, read and written with pyarrow.

A dataset is a folder (its ``*.parquet`` files, at any depth) or a glob, local or at any fsspec URL
(``s3://``, ``gs://``, ... where the filesystem package is installed). Its rows are numbered from 1
across its files, taken in the order of their paths. pyarrow and fsspec are optional
(``pip install 'covreq[parquet]'``); they are imported when a Parquet worklist is used.
"""
from __future__ import annotations

import datetime as dt
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from engine.worklists.worklist import Order, Rejection, WorklistError, read_rows

#: Rows converted from columns to cells at a time.
_BATCH_ROWS = 65_536
#: Largest column of one row group, uncompressed, in bytes, as the file's metadata states it: a
#: few kilobytes of zstd can hold hundreds of megabytes of one cell, refused before any is read.
MAX_CHUNK_BYTES = 128 * 1024 * 1024


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise WorklistError("Parquet needs pyarrow: pip install 'covreq[parquet]'") from None
    return pyarrow


def cell(value: Any) -> str:
    """A typed Parquet value as the text a CSV cell would hold (lists joined with ``;``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ";".join(cell(item) for item in value)
    return str(value)


#: Characters that make a worklist name a glob of files.
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Piece:
    """Consecutive row groups of one file of a dataset: the unit a worker reads. ``first`` is the
    number of its first row in the dataset."""

    path: str
    groups: tuple[int, ...]
    first: int
    rows: int


def is_dataset(name: str) -> bool:
    """Whether ``name`` is a dataset rather than one file: a glob, a name ending in ``/``, or a folder."""
    if GLOB_CHARACTERS & set(name) or name.endswith("/"):
        return True
    return "://" not in name and Path(name).is_dir()


def filesystem(name: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``name`` (a local path or a URL) and the path within it."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise WorklistError("Parquet datasets need fsspec: pip install 'covreq[parquet]'") from None
    try:
        return url_to_fs(name)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as err:  # an unknown protocol, or its package missing
        raise WorklistError(f"cannot open {name}: {err}") from None


def dataset_files(name: str) -> tuple[Any, list[str]]:
    """The filesystem of a Parquet worklist and its files, in the order their rows are numbered."""
    fs, path = filesystem(name)
    try:
        if GLOB_CHARACTERS & set(path):
            files = sorted(f for f in fs.glob(path) if fs.isfile(f))
        elif fs.isdir(path):
            files = sorted(f for f in fs.find(path) if f.endswith(".parquet"))
        else:
            files = [path] if fs.isfile(path) else []
    except OSError as err:
        raise WorklistError(f"cannot read {name}: {err}") from None
    if not files and not is_dataset(name):
        raise WorklistError(f"cannot read {name}: no such file")
    if not files:
        raise WorklistError(f"{name}: no Parquet file found there")
    return fs, files


def plan(name: str, piece_rows: int = _BATCH_ROWS) -> tuple[list[str], list[Piece]]:
    """The columns of the Parquet worklist ``name`` and its pieces of about ``piece_rows`` rows (whole
    row groups), read from the files' footers only. Every file must have the same columns; a column
    chunk past :data:`MAX_CHUNK_BYTES` is refused before any row is read."""
    pa = _pyarrow()
    fs, files = dataset_files(name)
    columns: list[str] | None = None
    pieces: list[Piece] = []
    first = 1
    for path in files:
        try:
            with fs.open(path, "rb") as stream:
                metadata = pa.parquet.ParquetFile(stream).metadata
        except (OSError, pa.ArrowException) as err:
            raise WorklistError(f"cannot read {path}: {err}") from None
        names = metadata.schema.to_arrow_schema().names
        if columns is None:
            columns = names
        elif names != columns:
            raise WorklistError(f"{path}: its columns ({', '.join(names)}) are not those of {files[0]} "
                                f"({', '.join(columns)}); the files of a dataset share their columns")
        try:
            _check_sizes(metadata)
        except WorklistError as err:
            raise WorklistError(f"{posixpath.basename(path)}: {err}") from None
        groups: list[int] = []
        rows = 0
        for group in range(metadata.num_row_groups):
            groups.append(group)
            rows += metadata.row_group(group).num_rows
            if rows >= piece_rows or group == metadata.num_row_groups - 1:
                pieces.append(Piece(path, tuple(groups), first, rows))
                first += rows
                groups, rows = [], 0
    assert columns is not None
    return columns, pieces


def piece_rows(fs: Any, piece: Piece, columns: list[str] | None = None) -> Iterator[tuple[int, list[str]]]:
    """The rows of ``piece`` (all its columns, or those named) as numbered text cells, as a CSV
    worklist's rows are read."""
    pa = _pyarrow()
    number = piece.first
    try:
        with fs.open(piece.path, "rb") as stream:
            for batch in pa.parquet.ParquetFile(stream).iter_batches(batch_size=_BATCH_ROWS, row_groups=piece.groups,
                                                                      columns=columns):
                for values in zip(*(column.to_pylist() for column in batch.columns)):
                    yield number, [cell(value) for value in values]
                    number += 1
    except (OSError, pa.ArrowException) as err:
        raise WorklistError(f"cannot read {piece.path}: {err}") from None


def read_parquet(path: Path | str) -> tuple[list[Order], list[Rejection], list[str]]:
    """Orders of a Parquet worklist, one file or a dataset (rows numbered from 1), the rows
    rejected, notes on how it was read."""
    name = str(path)
    columns, pieces = plan(name)  # its errors name their file
    fs, _ = filesystem(name)
    try:
        return read_rows(columns, (row for piece in pieces for row in piece_rows(fs, piece)))
    except WorklistError as err:
        if str(err).startswith("cannot read"):
            raise
        raise WorklistError(f"{posixpath.basename(name.rstrip('/'))}: {err}") from None


def _check_sizes(metadata: Any) -> None:
    """Refuse a column of a row group larger than :data:`MAX_CHUNK_BYTES` uncompressed, naming its rows."""
    first = 1
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group)
        for index in range(rows.num_columns):
            chunk = rows.column(index)
            if chunk.total_uncompressed_size > MAX_CHUNK_BYTES:
                raise WorklistError(
                    f"rows {first}-{first + rows.num_rows - 1} (row group {group + 1}), column {chunk.path_in_schema}: "
                    f"{chunk.total_uncompressed_size} bytes uncompressed, more than the limit of {MAX_CHUNK_BYTES} "
                    "bytes per column of a row group; write the file in smaller row groups")
        first += rows.num_rows


def write_parquet(records: Iterable[Sequence[Any]], path: Path | str, columns: Sequence[str],
                  integers: frozenset[str] = frozenset()) -> None:
    """Write rows of ``columns`` (``integers`` as int64, the others as strings) to ``path``: a file,
    or a dataset (a folder, local or at a URL), whose ``part.00000.parquet`` it then writes."""
    pa = _pyarrow()
    schema = pa.schema([(name, pa.int64() if name in integers else pa.string()) for name in columns])
    rows = list(records)
    values = list(zip(*rows)) if rows else [()] * len(columns)
    table = pa.Table.from_arrays([pa.array(column, field.type) for column, field in zip(values, schema)],
                                 schema=schema)
    name = str(path)
    dataset = is_dataset(name)
    if dataset:
        name = name.rstrip("/") + "/" + part_name(0)
    fs, where = filesystem(name)
    try:
        if dataset:
            fs.makedirs(posixpath.dirname(where), exist_ok=True)
        with fs.open(where, "wb") as stream:
            pa.parquet.write_table(table, stream)
    except (OSError, pa.ArrowException) as err:
        raise WorklistError(f"cannot write {path}: {err}") from None


def part_name(number: int) -> str:
    """The file name of part ``number`` of a Parquet dataset written by covreq."""
    return f"part.{number:05d}.parquet"
