"""Old module paths that registered versions still import.

A version's pyfunc model is its code (models-from-code: ``serving/pyfunc_model.py`` copied
into the version when it was logged), so a version registered before the 2026-12 layout
imports ``llmrec.bundle`` and ``llmrec.serving.schemas``. This finder answers those two
names with the modules they became, so that ``mlflow.pyfunc.load_model`` keeps loading old
versions; nothing in the repository imports them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

MOVED = {
    "llmrec.bundle": "llmrec.registry.bundle",
    "llmrec.serving.schemas": "llmrec.api.schemas",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def __init__(self) -> None:
        self.specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self.specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran under its new name; give it back the spec the import replaced."""
        if module.__spec__ is not None:
            module.__spec__ = self.specs[module.__spec__.name]


def install() -> None:
    """Answer the old names (once per process)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
