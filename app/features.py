"""Importing feature modules by name, tolerating features that are not part of this build."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_feature(module_name: str) -> ModuleType | None:
    """The module, or None when it (or its feature package) does not exist. Other import errors propagate."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
