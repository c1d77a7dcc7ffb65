"""Readers: contract Parquet/CSV (file or folder, any ``pyarrow.fs`` URI) and MovieLens.

Readers return raw tables; :mod:`llmrec.data.contract` checks them. CSV columns that the
contract types are read as strings so that one bad value is a rejected row, not a failed read.
"""

from __future__ import annotations

import io
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from llmrec.data.contract import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

MOVIELENS_URLS = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "ml-latest-small": "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
    "ml-25m": "https://files.grouplens.org/datasets/movielens/ml-25m.zip",
    "ml-32m": "https://files.grouplens.org/datasets/movielens/ml-32m.zip",
}
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


class DataSourceError(FileNotFoundError):
    """A data source could not be found or recognised."""


@dataclass
class RawData:
    """Raw interactions and items (and users, when the source has a user table), with where
    each came from (for error messages)."""

    interactions: pa.Table
    items: pa.Table
    interactions_source: str
    items_source: str
    users: pa.Table | None = None
    users_source: str = ""


def read_table(uri: str) -> pa.Table:
    """Read one Parquet or CSV file, or a folder of them, from a path or URI.

    Args:
        uri: A local path, ``file://``, ``s3://``, ``gs://``... (whatever ``pyarrow.fs``
            understands). Folders are read as one dataset; the format comes from the suffix
            of the first file found.

    Raises:
        DataSourceError: nothing readable at ``uri``.
    """
    fs, path = _filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataSourceError(f"{uri}: no such file or folder")
    if info.type == pafs.FileType.Directory:
        files = [
            f.path
            for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
            if f.type == pafs.FileType.File and _format(f.path)
        ]
        if not files:
            raise DataSourceError(f"{uri}: folder holds no .parquet or .csv files")
        fmt = _format(files[0])
        if fmt == "csv":
            return pa.concat_tables(
                [_read_csv(fs, f) for f in sorted(files)], promote_options="default"
            )
        return pads.dataset(sorted(files), filesystem=fs, format="parquet").to_table()
    fmt = _format(path)
    if fmt == "csv":
        return _read_csv(fs, path)
    if fmt == "parquet":
        return pads.dataset(path, filesystem=fs, format="parquet").to_table()
    raise DataSourceError(f"{uri}: expected a .parquet or .csv file")


def read_contract_folder(uri: str) -> RawData:
    """Read ``interactions.(parquet|csv)`` (or folder) and ``items.*`` from a folder, and
    ``users.*`` when there is one."""
    fs, path = _filesystem(uri)
    found = {}
    for info in fs.get_file_info(pafs.FileSelector(path)):
        stem = Path(info.path).name.split(".")[0]
        if stem in ("interactions", "items", "users"):
            found[stem] = (
                info.path if "://" not in uri else uri.rstrip("/") + "/" + Path(info.path).name
            )
    missing = {"interactions", "items"} - set(found)
    if missing:
        raise DataSourceError(
            f"{uri}: expected interactions.(parquet|csv) and items.(parquet|csv), "
            f"missing {sorted(missing)}"
        )
    users = found.get("users")
    return RawData(
        read_table(found["interactions"]),
        read_table(found["items"]),
        found["interactions"],
        found["items"],
        read_table(users) if users else None,
        users or "",
    )


def is_movielens(uri: str) -> bool:
    """True when ``uri`` is a MovieLens folder or zip in one of its published layouts."""
    p = Path(uri)
    if p.suffix == ".zip":
        return True
    return p.is_dir() and any((p / f).exists() for f in ("u.data", "ratings.dat", "ratings.csv"))


def read_movielens(uri: str) -> RawData:
    """Read MovieLens 100K (``u.data``/``u.item``), 1M (``ratings.dat``/``movies.dat``) or
    latest-small/25M/32M (``ratings.csv``/``movies.csv``, ``tags.csv`` when present), from
    a folder or the official zip, into contract-shaped tables (ratings become
    ``event="rating"``, ``value`` = the rating; genres become categories).
    """
    path = Path(uri)
    if path.suffix == ".zip":
        tmp = Path(tempfile.mkdtemp(prefix="llmrec-ml-"))
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        inner = [p for p in tmp.rglob("*") if p.name in ("u.data", "ratings.dat", "ratings.csv")]
        if not inner:
            raise DataSourceError(f"{uri}: zip holds no MovieLens ratings file")
        path = inner[0].parent
    if (path / "u.data").exists():
        return _ml100k(path)
    if (path / "ratings.dat").exists():
        return _ml1m(path)
    if (path / "ratings.csv").exists():
        return _ml_csv(path)
    raise DataSourceError(f"{uri}: no u.data, ratings.dat or ratings.csv: not a MovieLens folder")


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


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def _format(path: str) -> str | None:
    name = path.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def _read_csv(fs: pafs.FileSystem, path: str) -> pa.Table:
    typed = {f.name: pa.string() for f in (*INTERACTIONS_SCHEMA, *ITEMS_SCHEMA)}
    with fs.open_input_stream(path) as stream:
        return pacsv.read_csv(
            stream,
            convert_options=pacsv.ConvertOptions(column_types=typed, strings_can_be_null=True),
        )
