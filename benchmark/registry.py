"""One way to look things up by the name a config gives: backbones, methods, baselines and dataset
kinds are each a `Registry`, read as a mapping and asked with `lookup(name)`, whose error names the
known ones."""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

from benchmark.errors import UnknownNameError

T = TypeVar("T")


class Registry(MutableMapping[str, T], Generic[T]):
    """Items of one `kind` ("method", "baseline", ...) by name, in registration order. Setting an
    item registers it; deleting one is for tests that register a plugin for a while."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add `item`; a second, different item under a taken name is an error, not an override."""
        known = self._items.get(name)
        if known is not None and known is not item:
            raise ValueError(f"a different {self.kind} is already registered as {name!r}")
        self._items[name] = item
        return item

    def lookup(self, name: str) -> T:
        """The item called `name`; UnknownNameError listing the known names otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: "
                                   f"{', '.join(sorted(self._items))}") from None

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
