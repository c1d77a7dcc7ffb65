"""Reading Parquet and CSV files (local or any ``pyarrow.fs`` URI) into one raw table.

Files are read one by one and concatenated, so that a folder may mix formats and a column
may be typed differently in different files. CSV columns that the contract types are read as
strings, so that one bad value is a rejected row, not a failed read. What cannot be read
stops with a :class:`~llmrec.data.contract.DataError` naming the file (and line where
known); CSV rows that cannot be split into fields are set aside when ``strict`` is False.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from llmrec.data.contract import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, DataError, DataSourceError

_MAX_BLOCK = 2**31 - 1
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")


@dataclass(frozen=True)
class Unparsed:
    """A CSV row that could not be split into the header's fields (a ragged row, or an
    unterminated quote that ran into the next lines)."""

    source: str
    line: int | None
    text: str
    problem: str


@dataclass
class Read:
    """Rows read from one or more files, where each came from, and what could not be parsed.

    ``files`` lists ``(file, rows)`` in table order, so that a position in the table can be
    traced back to its file and row (:meth:`locate`).
    """

    table: pa.Table
    files: list[tuple[str, int]]
    unparsed: list[Unparsed] = field(default_factory=list)

    def locate(self, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The file and 1-based row within that file of 0-based table ``positions``."""
        sizes = np.array([n for _, n in self.files], dtype=np.int64)
        ends = np.cumsum(sizes)
        which = np.searchsorted(ends, positions, side="right")
        names = [self.files[w][0] for w in which]
        return names, np.asarray(positions, dtype=np.int64) - (ends - sizes)[which] + 1


def read_rows(uri: str, strict: bool = True) -> Read:
    """Read one Parquet or CSV file, or a folder of them, keeping where each row came from.

    Args:
        uri: A local path, ``file://``, ``s3://``, ``gs://``... (whatever ``pyarrow.fs``
            understands). A folder is read file by file (``.parquet``/``.pq``, ``.csv``,
            ``.csv.gz``, in name order, sub-folders included).
        strict: When False, CSV rows that cannot be parsed are set aside in
            :attr:`Read.unparsed` instead of stopping the read.

    Raises:
        DataSourceError: nothing readable at ``uri``.
        DataError: a file cannot be parsed (the message names the file and line).
    """
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise DataSourceError(f"{uri}: no such file or folder")
    return read_paths(fs, [(path, display(uri, path, path))], strict)


def read_paths(
    fs: pafs.FileSystem,
    paths: list[tuple[str, str]],
    strict: bool,
    text: Collection[str] = (),
) -> Read:
    """Read ``(path, name for messages)`` entries (files or folders) as one table; CSV
    columns named in ``text`` (the source columns of ``data.columns``) are read as strings,
    as the contract's columns are."""
    files: list[tuple[str, str]] = []
    for path, name in paths:
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            if not file_format(path):
                raise DataSourceError(f"{name}: expected a .parquet, .pq, .csv or .csv.gz file")
            files.append((path, name))
            continue
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        inside = sorted(f.path for f in found if f.type == pafs.FileType.File)
        readable = [f for f in inside if file_format(f)]
        if not readable:
            raise DataSourceError(f"{name}: folder holds no .parquet or .csv files")
        files += [(f, name.rstrip("/") + "/" + f[len(path) :].lstrip("/")) for f in readable]
    tables, unparsed = [], []
    for path, name in files:
        if file_format(path) == "csv":
            table, bad = _read_csv(fs, path, name, strict, text)
            unparsed += bad
        else:
            table = _read_parquet(fs, path, name)
        tables.append(_without_pandas_index(table))
    sizes = [(name, t.num_rows) for (_, name), t in zip(files, tables, strict=True)]
    return Read(_concat(tables), sizes, unparsed)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The ``pyarrow.fs`` filesystem and path of a local path or URI."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def display(uri: str, root: str, path: str) -> str:
    """How a file under ``uri`` (whose filesystem path is ``root``) is named in messages:
    as the user wrote it for URIs, as a local path otherwise."""
    if "://" not in uri or path == root:
        return uri if "://" in uri else path
    return uri.rstrip("/") + "/" + path[len(root) :].lstrip("/")


def file_format(path: str) -> str | None:
    """``parquet``, ``csv`` or None, from the file name."""
    name = path.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def _read_parquet(fs: pafs.FileSystem, path: str, name: str) -> pa.Table:
    try:
        return pq.read_table(path, filesystem=fs)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{name}: not a readable Parquet file ({_first_line(exc)})") from exc


def _read_csv(
    fs: pafs.FileSystem, path: str, name: str, strict: bool, text: Collection[str] = ()
) -> tuple[pa.Table, list[Unparsed]]:
    typed = {f.name: pa.string() for f in (*INTERACTIONS_SCHEMA, *ITEMS_SCHEMA)}
    typed.update({column: pa.string() for column in text})
    convert = pacsv.ConvertOptions(column_types=typed, strings_can_be_null=True)
    unparsed: list[Unparsed] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        problem = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        unparsed.append(Unparsed(name, row.number, row.text, problem))
        return "error" if strict else "skip"

    block, threads = 1 << 20, True  # pyarrow's default block; a row must fit in one
    while True:
        unparsed.clear()
        options = pacsv.ReadOptions(block_size=block, use_threads=threads)
        parse = pacsv.ParseOptions(invalid_row_handler=on_invalid)
        try:
            with fs.open_input_stream(path) as stream:
                table = pacsv.read_csv(
                    stream, read_options=options, parse_options=parse, convert_options=convert
                )
        except pa.ArrowInvalid as exc:
            if "straddling" in str(exc) and block < _MAX_BLOCK:
                size = fs.get_file_info(path).size or 0
                block = min(max(block * 64, size + 1), _MAX_BLOCK)
                continue
            if threads and unparsed and unparsed[-1].line is None:
                threads = False  # line numbers are known to a single-threaded read only
                continue
            raise _csv_error(fs, path, name, exc, unparsed, block) from exc
        if threads and any(u.line is None for u in unparsed):
            threads = False
            continue
        return table, unparsed


def _csv_error(
    fs: pafs.FileSystem,
    path: str,
    name: str,
    exc: Exception,
    unparsed: list[Unparsed],
    block: int,
) -> DataError:
    message = str(exc)
    if "Empty CSV file" in message:
        return DataError(f"{name}: empty file (a CSV file starts with a header of column names)")
    if "invalid UTF8" in message:
        line, column, byte = _first_non_utf8(fs, path)
        return DataError(
            f"{name}: line {line} is not UTF-8 (byte 0x{byte:02x} at position {column}); "
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        )
    if unparsed:
        row = unparsed[-1]
        return DataError(f"{name}: line {row.line}: {row.problem}: {_shorten(row.text)}")
    if "straddling" in message:
        return DataError(f"{name}: a row is longer than {block} bytes")
    return DataError(f"{name}: cannot be read as CSV ({_first_line(exc)})")


def _first_non_utf8(fs: pafs.FileSystem, path: str) -> tuple[int, int, int]:
    """(line, 1-based position in the line, byte) of the first byte that is not UTF-8."""
    with fs.open_input_stream(path) as stream:
        data = stream.read()
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            return number, err.start + 1, line[err.start]
    return 0, 0, 0


def _without_pandas_index(table: pa.Table) -> pa.Table:
    """No pandas index columns, and no pandas metadata: a file written by another pandas
    version may name dtypes this one does not know (e.g. ``list<item: null>[pyarrow]``)."""
    keep = [c for c in table.column_names if not _PANDAS_INDEX.match(c)]
    return table.select(keep).replace_schema_metadata(None)


def concat(tables: list[pa.Table]) -> pa.Table:
    """One table from tables whose columns may differ in type or be missing in some (a
    column typed differently is read as text everywhere; a missing one is null)."""
    return _concat(tables)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table from files whose columns may differ in type (CSV strings beside Parquet
    integers): a column typed differently across files is read as text everywhere."""
    if len(tables) == 1:
        return tables[0]
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    mixed = {name for name, seen in types.items() if len(seen) > 1}
    out = []
    for t in tables:
        for name in mixed & set(t.column_names):
            i = t.column_names.index(name)
            t = t.set_column(i, name, _as_text(t.column(i)))
        out.append(t)
    return pa.concat_tables(out, promote_options="permissive")


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    typ = col.type
    if pa.types.is_timestamp(typ):  # to the integer seconds the contract reads
        col = pc.cast(pc.cast(col, pa.timestamp("s"), safe=False), pa.int64())
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ):  # categories: "a|b"
        return pc.binary_join(pc.cast(col, pa.list_(pa.string())), "|")
    return pc.cast(col, pa.string())


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _shorten(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
