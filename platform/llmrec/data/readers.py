"""Readers: contract folders (``interactions.*`` and ``items.*``, any ``pyarrow.fs`` URI)
and MovieLens in its published layouts.

Readers return raw tables; :mod:`llmrec.data.contract` checks them. What cannot be read stops
with a :class:`DataError` (or :class:`DataSourceError` when nothing is there) naming the file;
``docs/data.md`` lists what each reader accepts.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from llmrec.data.columns import Columns, ColumnUse, apply_columns, check_used, mapping_for
from llmrec.data.contract import DataError, DataSourceError
from llmrec.data.files import Read, display, file_format, filesystem, read_paths, read_rows

__all__ = [
    "DataError",
    "DataSourceError",
    "RawData",
    "Read",
    "download_movielens",
    "is_movielens",
    "read_contract_folder",
    "read_movielens",
    "read_rows",
    "read_table",
]

MOVIELENS_URLS = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "ml-latest-small": "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
    "ml-25m": "https://files.grouplens.org/datasets/movielens/ml-25m.zip",
    "ml-32m": "https://files.grouplens.org/datasets/movielens/ml-32m.zip",
}
_RATINGS = ("u.data", "ratings.dat", "ratings.csv")
_ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


@dataclass
class RawData:
    """Raw interactions and items (and users, when the source has a user table), with where
    each came from (for error messages).

    ``interactions_read``/``items_read`` trace rows to their files when they were read
    from contract files; ``notes`` say what the readers decided (e.g. several files read);
    ``columns`` what each contract file's columns were used for (``data.columns``).
    """

    interactions: pa.Table
    items: pa.Table
    interactions_source: str
    items_source: str
    interactions_read: Read | None = None
    items_read: Read | None = None
    notes: list[str] = field(default_factory=list)
    users: pa.Table | None = None
    users_source: str = ""
    columns: list[ColumnUse] = field(default_factory=list)


def read_table(uri: str) -> pa.Table:
    """Read one Parquet or CSV file, or a folder of them, from a path or URI.

    See :func:`llmrec.data.files.read_rows` (this is its table, read strictly).

    Raises:
        DataSourceError: nothing readable at ``uri``.
        DataError: a file cannot be parsed (the message names the file and line).
    """
    return read_rows(uri).table


def read_contract_folder(
    uri: str, strict: bool = False, columns: Columns | None = None, lenient: bool = False
) -> RawData:
    """Read every ``interactions.*`` and ``items.*`` file or folder in a folder.

    All matching entries of a table are read and concatenated (``interactions.csv`` beside
    ``interactions.2023.csv`` and ``interactions.parquet``: a partitioned log), with a note
    naming them. CSV rows that cannot be parsed are set aside (``strict=False``). The
    files' columns are read under their contract names by ``columns`` (``data.columns``;
    see :mod:`llmrec.data.columns`; ``lenient``: a key a file cannot take is left out for
    that file), and :attr:`RawData.columns` says what each file's columns were used for.

    Raises:
        DataSourceError: ``uri`` is missing, is a file, or lacks one of the two tables.
        DataError: ``columns`` names an unknown contract column or a column a file lacks.
        ContractError: a required column is missing.
    """
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataSourceError(f"{uri}: no such file or folder")
    if info.type != pafs.FileType.Directory:
        raise DataSourceError(
            f"{uri}: is a file; expected a folder holding interactions.* and items.* "
            "(Parquet or CSV), or a MovieLens folder or zip"
        )
    entries = sorted(fs.get_file_info(pafs.FileSelector(path)), key=lambda e: e.path)
    found: dict[str, list[pafs.FileInfo]] = {"interactions": [], "items": [], "users": []}
    for entry in entries:
        stem = Path(entry.path).name.split(".")[0]
        if stem in found and (entry.type == pafs.FileType.Directory or file_format(entry.path)):
            found[stem].append(entry)
    missing = sorted(k for k, v in found.items() if not v and k != "users")
    if missing:
        raise DataSourceError(
            f"{uri}: expected interactions.(parquet|csv) and items.(parquet|csv), missing {missing}"
        )
    for kind in found:
        mapping_for(columns or {}, kind, uri)  # an unknown key stops before anything is read
    text = {s for v in (columns or {}).values() for s in ([v] if isinstance(v, str) else v)}
    first = {k: display(uri, path, v[0].path) for k, v in found.items() if v}
    reads, notes, used = {}, [], []
    for kind, matched in found.items():
        if not matched:
            continue
        named = [(e.path, display(uri, path, e.path)) for e in matched]
        read = read_paths(fs, named, strict, text)
        if len(matched) > 1:
            names = ", ".join(Path(e.path).name for e in matched)
            notes.append(f"{kind}: read {len(matched)} files as one table: {names}")
        name = Path(matched[0].path).name if len(matched) == 1 else f"{kind} ({len(matched)} files)"
        table, use = apply_columns(read.table, kind, first[kind], name, columns, lenient)
        reads[kind] = dataclasses.replace(read, table=table)
        used.append(use)
        notes += use.notes
    if not lenient:
        check_used(columns, used, uri)
    users = reads.get("users")
    return RawData(
        reads["interactions"].table,
        reads["items"].table,
        first["interactions"],
        first["items"],
        reads["interactions"],
        reads["items"],
        notes,
        users=users.table if users is not None else None,
        users_source=first.get("users", ""),
        columns=used,
    )


def is_movielens(uri: str) -> bool:
    """True when ``uri`` is a MovieLens folder or zip in one of its published layouts."""
    p = Path(uri)
    if p.suffix == ".zip":
        return True
    return p.is_dir() and any((p / f).exists() for f in _RATINGS)


def read_movielens(uri: str) -> RawData:
    """Read MovieLens 100K (``u.data``/``u.item``), 1M (``ratings.dat``/``movies.dat``) or
    latest-small/25M/32M (``ratings.csv``/``movies.csv``, ``tags.csv`` when present), from
    a folder or the official zip, into contract-shaped tables (ratings become
    ``event="rating"``, ``value`` = the rating; genres become categories).

    Raises:
        DataSourceError: ``uri`` is missing or is not a MovieLens folder or zip.
        DataError: a file cannot be read (the message names it).
    """
    path = Path(uri)
    if not path.exists():
        raise DataSourceError(f"{uri}: no such file or folder")
    if path.suffix == ".zip":
        path = _unzip(path)
    readers = {"u.data": _ml100k, "ratings.dat": _ml1m, "ratings.csv": _ml_csv}
    for ratings, reader in readers.items():
        if (path / ratings).exists():
            try:
                return reader(path)
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError, KeyError) as exc:
                raise DataError(f"{path}: not a readable MovieLens folder ({exc})") from exc
    raise DataSourceError(f"{uri}: no u.data, ratings.dat or ratings.csv: not a MovieLens folder")


def _unzip(path: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-ml-"))
    try:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc})") from exc
    inner = [p for p in tmp.rglob("*") if p.name in _RATINGS]
    if not inner:
        names = ", ".join(_RATINGS)
        raise DataSourceError(f"{path}: zip holds no MovieLens ratings file ({names})")
    return inner[0].parent


def download_movielens(name: str, dest: str | Path) -> Path:
    """Download and unpack an official MovieLens archive (needs internet access).

    Returns:
        The unpacked folder (``dest/<name>``).
    """
    if name not in MOVIELENS_URLS:
        raise DataSourceError(
            f"unknown MovieLens dataset {name!r}; known: {sorted(MOVIELENS_URLS)}"
        )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(MOVIELENS_URLS[name], timeout=120) as resp:
        payload = resp.read()
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        zf.extractall(dest)
    return dest / name


def _ml100k(path: Path) -> RawData:
    ratings = pd.read_csv(
        path / "u.data", sep="\t", names=["user_id", "item_id", "value", "timestamp"], dtype=str
    )
    cols = ["item_id", "title", "release_date", "video_release_date", "url", *_ML100K_GENRES]
    movies = pd.read_csv(path / "u.item", sep="|", names=cols, encoding="latin-1", dtype=str)
    flags = movies[_ML100K_GENRES].astype(int).to_numpy()
    movies["categories"] = [
        [g for g, f in zip(_ML100K_GENRES, row, strict=True) if f] for row in flags
    ]
    movies["text"] = movies["release_date"].map(
        lambda d: f"Released {d}." if isinstance(d, str) and d else None
    )
    items = movies[["item_id", "title", "text", "categories"]]
    raw = _raw(ratings, items, path / "u.data", path / "u.item")
    if (path / "u.user").exists():  # user id | age | gender | occupation | zip code
        users = pd.read_csv(
            path / "u.user",
            sep="|",
            names=["user_id", "age", "gender", "occupation", "zip_code"],
            dtype=str,
            encoding="latin-1",
        )
        users["age"] = users["age"].map(_age_band)
        _with_users(raw, users[["user_id", "gender", "age", "occupation"]], path / "u.user")
    return raw


def _ml1m(path: Path) -> RawData:
    ratings = pd.read_csv(
        path / "ratings.dat",
        sep="::",
        engine="python",
        encoding="latin-1",
        names=["user_id", "item_id", "value", "timestamp"],
        dtype=str,
    )
    movies = pd.read_csv(
        path / "movies.dat",
        sep="::",
        engine="python",
        encoding="latin-1",
        names=["item_id", "title", "genres"],
        dtype=str,
    )
    movies["categories"] = movies["genres"].fillna("").str.split("|")
    movies["text"] = None
    raw = _raw(
        ratings,
        movies[["item_id", "title", "text", "categories"]],
        path / "ratings.dat",
        path / "movies.dat",
    )
    if (path / "users.dat").exists():  # UserID::Gender::Age::Occupation::Zip-code
        users = pd.read_csv(
            path / "users.dat",
            sep="::",
            engine="python",
            encoding="latin-1",
            names=["user_id", "gender", "age", "occupation", "zip_code"],
            dtype=str,
        )
        users["age"] = users["age"].map(lambda a: _ML1M_AGES.get(str(a), a))
        users["occupation"] = users["occupation"].map(
            lambda o: _ML1M_OCCUPATIONS[int(o)] if str(o).isdigit() and int(o) < 21 else o
        )
        _with_users(raw, users[["user_id", "gender", "age", "occupation"]], path / "users.dat")
    return raw


def _ml_csv(path: Path) -> RawData:
    ratings = pd.read_csv(path / "ratings.csv", dtype=str).rename(
        columns={"userId": "user_id", "movieId": "item_id", "rating": "value"}
    )
    movies = pd.read_csv(path / "movies.csv", dtype=str).rename(columns={"movieId": "item_id"})
    movies["categories"] = (
        movies["genres"].fillna("").map(lambda g: [] if g == "(no genres listed)" else g.split("|"))
    )
    movies["text"] = None
    if (path / "tags.csv").exists():  # user tags become the item description
        tags = pd.read_csv(path / "tags.csv", dtype=str).rename(columns={"movieId": "item_id"})
        joined = tags.groupby("item_id")["tag"].agg(
            lambda t: "Tags: " + ", ".join(sorted(set(map(str, t)))[:20]) + "."
        )
        movies["text"] = movies["item_id"].map(joined)
    return _raw(
        ratings,
        movies[["item_id", "title", "text", "categories"]],
        path / "ratings.csv",
        path / "movies.csv",
    )


_ML1M_AGES = {
    "1": "Under 18",
    "18": "18-24",
    "25": "25-34",
    "35": "35-44",
    "45": "45-49",
    "50": "50-55",
    "56": "56+",
}
_ML1M_OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


def _age_band(age: object) -> object:
    """ML-100K's age in years as ML-1M's age band (``25-34``); other text unchanged."""
    text = str(age).strip()
    if not text.isdigit():
        return age
    years = int(text)
    for low, band in ((56, "56+"), (50, "50-55"), (45, "45-49"), (35, "35-44"), (25, "25-34")):
        if years >= low:
            return band
    return "18-24" if years >= 18 else "Under 18"


def _with_users(raw: RawData, users: pd.DataFrame, source: Path) -> None:
    raw.users = pa.Table.from_pandas(users, preserve_index=False)
    raw.users_source = str(source)


def _raw(ratings: pd.DataFrame, items: pd.DataFrame, rsrc: Path, isrc: Path) -> RawData:
    ratings = ratings.assign(event="rating")[["user_id", "item_id", "timestamp", "event", "value"]]
    return RawData(
        pa.Table.from_pandas(ratings, preserve_index=False),
        pa.Table.from_pandas(items, preserve_index=False),
        str(rsrc),
        str(isrc),
    )
