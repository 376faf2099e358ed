"""One way to look things up by the name a config gives: backbones, methods, baselines and dataset
kinds are each a `Registry`, read as a mapping and asked with `lookup(name)`, whose error names the
known ones.

An item may be registered by where it lives ("package.module:ATTRIBUTE") and imported on its
first lookup, so that a command pays only for what its grid names: the peft bridge imports peft,
QLoRA bitsandbytes, a baseline MONAI, and `saltbench validate` of a grid without them none of these.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from benchmark.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class _Later:
    """An item not imported yet: where it lives (`module:attribute`) and how to import it."""

    where: str
    load: Callable[[], object]


class Registry(MutableMapping[str, T], Generic[T]):
    """Items of one `kind` ("method", "baseline", ...) by name, in registration order. Setting an
    item registers it; deleting one is for tests that register a plugin for a while. `expects`:
    the type an item registered by its place must have when it is imported."""

    def __init__(self, kind: str, expects: type | None = None) -> None:
        self.kind = kind
        self.expects = expects
        self._items: dict[str, T | _Later] = {}

    def register(self, name: str, item: T) -> T:
        """Add `item`; a second, different item under a taken name is an error, not an override
        (the item a name was registered `later` for takes its place)."""
        known = self._items.get(name)
        if known is not None and known is not item and not isinstance(known, _Later):
            raise ValueError(f"a different {self.kind} is already registered as {name!r}")
        self._items[name] = item
        return item

    def register_later(self, name: str, where: str, load: Callable[[], object] | None = None) -> None:
        """Register `name` as the item `where` ("package.module:ATTRIBUTE") names, imported on its
        first lookup by `load` (default: import the module, read the attribute; an entry point
        passes its own `load`)."""
        known = self._items.get(name)
        if known is not None and not (isinstance(known, _Later) and known.where == where):
            raise ValueError(f"a different {self.kind} is already registered as {name!r}")
        self._items[name] = _Later(where, load or functools.partial(self._attribute, name, where))

    def lookup(self, name: str) -> T:
        """The item called `name`; UnknownNameError listing the known names otherwise."""
        try:
            item = self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: "
                                   f"{', '.join(sorted(self._items))}") from None
        return self._imported(name, item) if isinstance(item, _Later) else item

    def _attribute(self, name: str, where: str) -> object:
        module, _, attribute = where.partition(":")
        item = importlib.import_module(module)
        for part in attribute.split("."):
            if not hasattr(item, part):
                raise TypeError(f"{self.kind} {name!r}: {module} defines no {attribute}")
            item = getattr(item, part)
        return item

    def _imported(self, name: str, later: _Later) -> T:
        """The item `later` loads, checked and registered in its place."""
        item = later.load()
        if self.expects is not None and not isinstance(item, self.expects):
            raise TypeError(f"{self.kind} {name!r}: {later.where} is a {type(item).__name__}, not a {self.expects.__name__}")
        if getattr(item, "name", name) != name:
            raise TypeError(f"{self.kind} {name!r}: {later.where} is named {item.name!r}; register it under the name "
                            "configs give it")
        return self.register(name, item)

    def __getitem__(self, name: str) -> T:
        return self.lookup(name)

    def __setitem__(self, name: str, item: T) -> None:
        self.register(name, item)

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
