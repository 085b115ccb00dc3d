"""Parquet worklists: the CSV layout in a columnar file, read and written with pyarrow.

pyarrow is optional (``pip install 'covreq[parquet]'``); it is imported when a Parquet file is used.
"""
from __future__ import annotations

import datetime as dt
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


def read_parquet(path: Path) -> tuple[list[Order], list[Rejection], list[str]]:
    """Orders of a Parquet worklist (rows numbered from 1), the rows rejected, notes on how it was read."""
    pa = _pyarrow()
    try:
        table = pa.parquet.ParquetFile(path)
        _check_sizes(table.metadata)

        def rows() -> Iterator[tuple[int, list[str]]]:
            number = 0
            for batch in table.iter_batches(batch_size=_BATCH_ROWS):
                for values in zip(*(column.to_pylist() for column in batch.columns)):
                    number += 1
                    yield number, [cell(value) for value in values]
        return read_rows(table.schema_arrow.names, rows())
    except (OSError, pa.ArrowException) as err:
        raise WorklistError(f"cannot read {path}: {err}") from None
    except WorklistError as err:
        raise WorklistError(f"{path.name}: {err}") from None


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


def write_parquet(records: Iterable[Sequence[Any]], path: Path, columns: Sequence[str],
                  integers: frozenset[str] = frozenset()) -> None:
    """Write rows of ``columns`` (``integers`` as int64, the others as strings) to ``path``."""
    pa = _pyarrow()
    schema = pa.schema([(name, pa.int64() if name in integers else pa.string()) for name in columns])
    rows = list(records)
    values = list(zip(*rows)) if rows else [()] * len(columns)
    table = pa.Table.from_arrays([pa.array(column, field.type) for column, field in zip(values, schema)],
                                 schema=schema)
    try:
        pa.parquet.write_table(table, path)
    except (OSError, pa.ArrowException) as err:
        raise WorklistError(f"cannot write {path}: {err}") from None
