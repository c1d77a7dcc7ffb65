"""Validate a data source against the contract and write contract Parquet.

    python jobs/prepare_data.py path/to/ml-100k --out data/ml-100k
    python jobs/prepare_data.py s3://bucket/logs/ --out data/logs      # interactions.* + items.*
    python jobs/prepare_data.py demo --out data/demo
    python jobs/prepare_data.py --download ml-1m --out data/ml-1m      # needs internet
    python jobs/prepare_data.py data/shop --out data/shop \
        --column value=rating --column text=description,bullet_points   # your column names
    python jobs/prepare_data.py data/shop --out data/shop --config shop.yaml  # its data.columns

Writes OUT/items.parquet, OUT/interactions.parquet and, when rows were set aside,
OUT/rejected/{items,interactions}.parquet with a `reason` column; prints a summary, which
starts with what each file's columns were used for (docs/data.md, "Your columns").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import TYPE_CHECKING

from _common import add_verbose_arg
from llmrec import console

if TYPE_CHECKING:
    from llmrec.config import DataConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "source", nargs="?", help="demo, a contract folder, or a MovieLens folder/zip"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--download", metavar="NAME", help="fetch an official MovieLens archive first"
    )
    parser.add_argument(
        "--config",
        help="a job config (YAML) whose data section applies (data.columns, data.events)",
    )
    parser.add_argument(
        "--column",
        dest="columns",
        action="append",
        default=[],
        metavar="KEY=COLUMN",
        help="read the files' COLUMN as contract column KEY (data.columns), e.g. value=rating, "
        "item_id=sku, text=description,bullet_points (text joins several)",
    )
    add_verbose_arg(parser)
    args = parser.parse_args(argv)
    if not args.source and not args.download:
        parser.error("give a SOURCE or --download NAME")
    console.setup(args.verbose)
    data = data_config(args.config, args.columns)
    with console.report_errors(args.verbose):
        from llmrec.data.prepare import load_source, output_dir, prepare
        from llmrec.data.readers import download_movielens

        output_dir(args.out)  # a bad --out fails before the data is read
        source = args.source
        if args.download:
            source = str(download_movielens(args.download, tempfile.mkdtemp(prefix="llmrec-dl-")))
        prepared = prepare(load_source(source, data), args.out, data.events)
        print(prepared.summary())
        out = prepared.out_dir
        print(f"wrote {out / 'items.parquet'} and {out / 'interactions.parquet'}")
    return 0


def data_config(config: str | None, columns: list[str]) -> DataConfig:
    """The ``data`` section of ``config`` (the defaults without one) with ``--column
    KEY=COLUMN`` added to its ``data.columns``; a bad config or column ends the job with one
    line."""
    from llmrec.config import ConfigError, load_config

    mapping: dict[str, str | list[str]] = {}
    for item in columns:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            console.fail(f"--column {item!r} must look like KEY=COLUMN, e.g. value=rating")
        mapping[key] = [v.strip() for v in value.split(",")] if key.endswith("text") else value
    try:
        data = load_config(config).data
        if not mapping:
            return data
        joined = json.dumps({**data.columns, **mapping}, ensure_ascii=False)
        return load_config(config, [f"data.columns={joined}"]).data
    except ConfigError as exc:
        console.fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
