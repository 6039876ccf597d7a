"""Registry of methods: built-ins, entry-point plugins and `module:Class` references.

Built-in methods are listed as import paths and imported on first use, so that listing methods
does not import torch. Third-party packages register methods through the entry-point group
`clairo_bench.methods`::

    [project.entry-points."clairo_bench.methods"]
    my-method = "my_package.module:MyMethod"
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

from clairo_bench.methods.base import Method

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clairo_bench.methods"

BUILTIN_METHODS: dict[str, str] = {
    "pop": "clairo_bench.methods.pop:Pop",
    "sasrec": "clairo_bench.methods.sasrec:SASRec",
    "gru4rec": "clairo_bench.methods.gru4rec:GRU4Rec",
    "bert4rec": "clairo_bench.methods.bert4rec:BERT4Rec",
    "actionpiece": "clairo_bench.methods.actionpiece:ActionPiece",
    "clairo": "clairo_bench.methods.clairo:Clairo",
    "clairo-text-only": "clairo_bench.methods.clairo:ClairoTextOnly",
    "clairo-image-only": "clairo_bench.methods.clairo:ClairoImageOnly",
    "clairo-final-pca": "clairo_bench.methods.clairo:ClairoFinalPCA",
    "mql4grec": "clairo_bench.methods.mql4grec:MQL4GRec",
    "tiger": "clairo_bench.methods.tiger:TIGER",
}


class UnknownMethodError(KeyError):
    """A method name that no built-in, plugin or reference provides."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class MethodEntry:
    """Origin of a registered method.

    Attributes:
        name: the name used on the command line.
        target: import path "module:Class".
        origin: "built-in", "entry point (<distribution>)" or "--plugin".
    """

    name: str
    target: str
    origin: str


_plugins: dict[str, MethodEntry] = {}


def register_plugin(reference: str) -> str:
    """Register a `module:Class` reference (the `--plugin` option); return the method's name.

    A module in the current folder is found too: `python -m` puts that folder on sys.path but
    the `clairo-bench` console script does not, so it is appended here (after installed packages,
    which it therefore cannot shadow).
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    method_class = load_class(reference)
    entry = MethodEntry(name=method_class.name, target=reference, origin="--plugin")
    _plugins[entry.name] = entry
    return entry.name


def available_methods() -> dict[str, MethodEntry]:
    """List every method by name: built-ins, then entry points, then `--plugin` references."""
    entries = {
        name: MethodEntry(name=name, target=target, origin="built-in")
        for name, target in BUILTIN_METHODS.items()
    }
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry_point.dist.name if entry_point.dist else "unknown distribution"
        if entry_point.name in entries:
            logger.warning(
                "Entry point %s from %s is ignored: a method named %r already exists (%s).",
                entry_point.value, distribution, entry_point.name, entries[entry_point.name].origin,
            )
            continue
        entries[entry_point.name] = MethodEntry(
            name=entry_point.name,
            target=entry_point.value,
            origin=f"entry point ({distribution})",
        )
    entries.update(_plugins)
    return entries


def get_method_class(name: str) -> type[Method]:
    """Import and return the method class registered as `name`."""
    entries = available_methods()
    if name not in entries:
        raise UnknownMethodError(
            f"Unknown method {name!r}. Available: {', '.join(sorted(entries))}. "
            "Third-party methods load with --plugin module:Class or through the "
            f"{ENTRY_POINT_GROUP!r} entry-point group."
        )
    method_class = load_class(entries[name].target)
    if method_class.name != name:
        raise UnknownMethodError(
            f"{entries[name].target} is registered as {name!r} but its class sets "
            f"name = {method_class.name!r}; make the two equal."
        )
    return method_class


def load_class(reference: str) -> type[Method]:
    """Import `module:Class` and check that it is a `Method` subclass with a name."""
    module_name, _, class_name = reference.partition(":")
    if not module_name or not class_name:
        raise UnknownMethodError(
            f"Invalid method reference {reference!r}; write it as module:Class, "
            "for example my_package.methods:MyMethod."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownMethodError(
            f"Cannot import module {module_name!r} for method {reference!r}: {error}"
        ) from error
    method_class = getattr(module, class_name, None)
    if not isinstance(method_class, type) or not issubclass(method_class, Method):
        raise UnknownMethodError(
            f"{reference!r} is not a subclass of clairo_bench.methods.base.Method."
        )
    if not getattr(method_class, "name", None):
        raise UnknownMethodError(f"{reference!r} must set the class attribute `name`.")
    return method_class
