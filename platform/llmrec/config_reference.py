"""The configuration reference (``docs/config.md``), generated from the code.

Every key of the job config (:mod:`llmrec.config`) and every serving setting
(:class:`llmrec.serving.settings.ServeSettings`) becomes one table row: key, type, default and
its description. Config fields are described by the docstring under each field (read here with
:mod:`ast`), serving settings by their ``Field(description=...)``; nothing is written by hand.

    python -m llmrec.config_reference > docs/config.md     # regenerate
    python -m llmrec.config_reference --check docs/config.md  # exit 1 when out of date
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

import yaml

from llmrec import config

COMMAND = "python -m llmrec.config_reference > docs/config.md"

INTRO = f"""\
# Configuration reference

Generated from `platform/llmrec/config/` and `platform/llmrec/serving/settings.py`: do not
edit it by hand, document the field in the code and regenerate the page with

    {COMMAND}

(`--check docs/config.md` instead of the redirection exits 1 when the page is not current;
`tests/unit/test_config_reference.py` fails then too).

**Jobs** (`jobs/finetune.py`, `jobs/evaluate.py`, `jobs/update.py`, ...) read a YAML file with
the sections below (`--config jobs/configs/ml100k.yaml`); any key can be overridden with
`--set section.key=value`, the value parsed as YAML (`--set train.epochs=3`,
`--set model.target_modules=[q_proj,v_proj]`). Keys left out keep the defaults listed here.

**Serving** reads the [serving settings](#serving-settings): the `args` of the application in
`serve_deployments/serve_config.yaml`, or `key=value` arguments of
`serve run serve_deployments:build_app model_uri=models:/llmrec-scorer/2 index=hnsw`.
"""


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the annotated attributes of a class, by attribute name."""
    tree = ast.parse(inspect.getsource(cls).lstrip())
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def one_line(text: str | None) -> str:
    """Docstring text as one Markdown line: reST literals and roles as code, ``|`` escaped."""
    text = re.sub(r":\w+:`([^`]+)`", r"``\1``", " ".join((text or "").split()))
    parts = text.replace("``", "`").split("`")
    # Even parts are prose (an HTML-like <word> would vanish), odd parts are code spans.
    parts = [p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts)]
    return "`".join(parts).replace("|", "\\|")


def value(v: Any) -> str:
    """A value as written in YAML (plain strings bare, the rest as JSON), for a table cell."""
    plain = isinstance(v, str) and v and yaml.safe_load(v) == v and "`" not in v
    text = v if plain else json.dumps(v, default=str)
    return text.replace("|", "\\|")


def type_name(hint: Any) -> str:
    """A type annotation in words (Markdown)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("`null`" if a is type(None) else type_name(a) for a in args)
    if origin in (tuple, list):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    return f"`{getattr(hint, '__name__', str(hint))}`"


def bounds(metadata: list[Any]) -> str:
    """Numeric bounds of a pydantic field (``ge=1, le=1024``) as ``>= 1, <= 1024``."""
    ops = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
    return ", ".join(
        f"{op} {getattr(m, name)}" for m in metadata for name, op in ops if hasattr(m, name)
    )


Row = tuple[str, str, str, str]


def default_of(f: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default, its ``default_factory`` called."""
    factory = f.default_factory
    return factory() if callable(factory) else f.default


def config_rows(section: str, cls: type) -> Iterator[Row]:
    hints, docs = typing.get_type_hints(cls), attribute_docs(cls)
    for f in dataclasses.fields(cls):
        kind, default = type_name(hints[f.name]), value(default_of(f))
        yield f"{section}.{f.name}", kind, default, one_line(docs.get(f.name))


def serve_rows() -> Iterator[Row]:
    from llmrec.serving.settings import ServeSettings

    docs = attribute_docs(ServeSettings)
    for name, info in ServeSettings.model_fields.items():
        kind = type_name(info.annotation)
        if limits := bounds(info.metadata):
            kind += f", {limits}"
        described = info.description or docs.get(name)
        default = info.get_default(call_default_factory=True)
        yield name, kind, value(default), one_line(described)


def table(rows: Iterator[Row]) -> str:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {kind} | `{default}` | {text} |" for key, kind, default, text in rows]
    return "\n".join(lines) + "\n"


def sections() -> list[tuple[str, type]]:
    """The config sections, in the order of :class:`llmrec.config.Config`'s fields."""
    hints = typing.get_type_hints(config.Config)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(config.Config)]


def render() -> str:
    """The whole reference page, as Markdown."""
    from llmrec.serving import settings

    out = [INTRO]
    for section, cls in sections():
        out.append(
            f"## `{section}`\n\n{one_line(cls.__doc__)}\n\n{table(config_rows(section, cls))}"
        )
    if config.RETIRED_KEYS:
        retired = "\n".join(f"- `{k}`: {one_line(why)}" for k, why in config.RETIRED_KEYS.items())
        out.append(f"## Retired keys\n\nIgnored where older configs hold them.\n\n{retired}\n")
    intro = "\n\n".join(one_line(p) for p in inspect.cleandoc(settings.__doc__ or "").split("\n\n"))
    out.append(f"## Serving settings\n\n{intro}\n\n{table(serve_rows())}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", metavar="PATH", help="exit 1 when PATH differs from the page")
    args = parser.parse_args(argv)
    page = render()
    if args.check is None:
        sys.stdout.write(page)
        return 0
    try:
        with open(args.check, encoding="utf-8") as fh:
            current = fh.read() == page
    except FileNotFoundError:
        current = False
    if not current:
        fix = COMMAND.replace("docs/config.md", args.check)
        print(f"{args.check} is not current; regenerate it: {fix}", file=sys.stderr)
    return 0 if current else 1


if __name__ == "__main__":
    raise SystemExit(main())
