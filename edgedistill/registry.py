"""Generic name → object registry with did-you-mean errors (students, losses, runtimes, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from edgedistill.errors import RegistryError

T = TypeVar("T")


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """`unknown KIND 'name'; did you mean 'x'? known: a, b, c` (the hint only when a known name is close)."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} {name!r}{hint} known: {', '.join(names)}"


class Registry(Generic[T]):
    """A named collection of factories or objects of one kind.

    Example:
        >>> LOSSES: Registry[Callable[..., Loss]] = Registry("loss")
        >>> @LOSSES.register("kd")
        ... def kd(...): ...
        >>> LOSSES.get("kd")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding `obj` under `name`; a second registration of a name is a bug."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Return the entry `name` or raise `RegistryError` with close matches and the known names."""
        try:
            return self._items[name]
        except KeyError:
            pass
        raise RegistryError(unknown_name(self.kind, name, self._items))

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
