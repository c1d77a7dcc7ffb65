"""Validate a data source against the contract and write contract Parquet.

    python jobs/prepare_data.py ../shared/data/ml-100k --out data/ml-100k
    python jobs/prepare_data.py s3://bucket/logs/ --out data/logs      # interactions.* + items.*
    python jobs/prepare_data.py demo --out data/demo
    python jobs/prepare_data.py --download ml-1m --out data/ml-1m      # needs internet

Writes OUT/items.parquet, OUT/interactions.parquet and, when rows were set aside,
OUT/rejected/{items,interactions}.parquet with a `reason` column; prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from _common import add_verbose_arg
from llmrec import console


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
    add_verbose_arg(parser)
    args = parser.parse_args(argv)
    if not args.source and not args.download:
        parser.error("give a SOURCE or --download NAME")
    console.setup(args.verbose)
    with console.report_errors(args.verbose):
        from llmrec.data.prepare import load_source, output_dir, prepare
        from llmrec.data.readers import download_movielens

        output_dir(args.out)  # a bad --out fails before the data is read
        source = args.source
        if args.download:
            source = str(download_movielens(args.download, tempfile.mkdtemp(prefix="llmrec-dl-")))
        prepared = prepare(load_source(source), args.out)
        print(prepared.summary())
        out = prepared.out_dir
        print(f"wrote {out / 'items.parquet'} and {out / 'interactions.parquet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
