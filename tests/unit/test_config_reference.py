"""docs/config.md is generated from the code and current: every key, with its default."""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from llmrec import config
from llmrec.config_reference import COMMAND, attribute_docs, main, render
from llmrec.serving.settings import ServeSettings

from tests.conftest import REPO

PAGE = REPO / "docs" / "config.md"


def rows(page: str) -> dict[str, list[str]]:
    """Table rows by key: ``{"train.epochs": [type, default, description], ...}``."""
    out = {}
    for line in page.splitlines():
        if line.startswith("| `"):
            key, *cells = (c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1])
            out[key.strip("`")] = cells
    return out


def expected() -> dict[str, tuple[Any, str]]:
    """Every config and serving key, with its default and its documentation in code."""
    out: dict[str, tuple[Any, str]] = {}
    hints = typing.get_type_hints(config.Config)
    for section in dataclasses.fields(config.Config):
        cls = hints[section.name]
        docs = attribute_docs(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            out[f"{section.name}.{f.name}"] = (default, docs.get(f.name, ""))
    serve_docs = attribute_docs(ServeSettings)
    for name, info in ServeSettings.model_fields.items():
        doc = info.description or serve_docs.get(name, "")
        out[name] = (info.get_default(call_default_factory=True), doc)
    return out


def test_page_is_current():
    page = render()
    current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if current != page:
        diff = difflib.unified_diff(
            current.splitlines(), page.splitlines(), "docs/config.md", "render()", lineterm=""
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/config.md is not current; regenerate it with\n  {COMMAND}\n{shown}")


def test_every_key_appears_with_its_default():
    table = rows(render())
    keys = expected()
    assert set(table) == set(keys), "rows without a key, or keys without a row"
    for key, (default, doc) in keys.items():
        kind, cell, description = table[key]
        written = yaml.safe_load(cell.strip("`"))
        want = list(default) if isinstance(default, tuple) else default
        assert written == want, f"{key}: the page says {cell}, the code {default!r}"
        assert bool(description) == bool(doc), f"{key}: description {description!r}"
        assert kind


def test_description_is_the_code_docstring_on_one_line():
    table = rows(render())
    assert table["train.epochs"][2] == (
        "Passes over the training examples (the `text` design needs 2 to 3)."
    )
    assert table["model.architecture"][0] == "one of `sequential`, `text`"
    assert table["rank.max_per"][1] == "`{}`"
    assert table["max_batch_size"][0] == "`int`, >= 1, <= 1024"
    assert "\n" not in "".join(c for cells in table.values() for c in cells)


def test_check_exits_1_with_the_command_when_out_of_date(tmp_path: Path, capsys):
    page = tmp_path / "config.md"
    page.write_text("stale\n", encoding="utf-8")
    assert main(["--check", str(page)]) == 1
    assert "python -m llmrec.config_reference >" in capsys.readouterr().err
    page.write_text(render(), encoding="utf-8")
    assert main(["--check", str(page)]) == 0
