"""Registries of component types by name: how YAML `type:` strings find their classes."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from ..codecs.base import Codec
    from ..codecs.framing import Framing
    from .stage import Sink, Source, Transform


class Registrable(Protocol):
    """A class that can be registered: it carries the name it is registered under."""

    type_name: ClassVar[str]


T = TypeVar("T", bound=type[Registrable])
T_co = TypeVar("T_co", covariant=True)

#: Packages whose modules register the built-in components on import.
BUILTIN_PACKAGES = ("streamflow.codecs", "streamflow.connectors", "streamflow.transforms")
#: Entry-point group third-party packages use to register their own components.
PLUGIN_GROUP = "streamflow.plugins"


class UnknownType(KeyError):
    """No component of that kind is registered under that name."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:
        close = difflib.get_close_matches(self.name, self.known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} type {self.name!r}{hint}; expected one of: {', '.join(self.known)}"


class Registry(Generic[T]):
    """Name -> class for one kind of component (source, sink, transform, codec, framing, …)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._types: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make the class available as ``type: name``."""
        def decorate(cls: T) -> T:
            if name in self._types and self._types[name] is not cls:
                raise ValueError(f"{self.kind} type {name!r} registered twice")
            self._types[name] = cls
            cls.type_name = name
            return cls
        return decorate

    def get(self, name: str) -> T:
        """The class registered as ``name``, or the class a ``module:Class`` import path names.

        An imported class must be of this registry's kind (``Sink`` subclasses
        for sinks …); it needs no registration. Raises `UnknownType`, or
        ``ValueError`` for an import path that does not name such a class.
        """
        load_builtins()
        if ":" in name:
            return self._imported(name)
        try:
            return self._types[name]
        except KeyError:
            raise UnknownType(self.kind, name, sorted(self._types)) from None

    def _imported(self, ref: str) -> T:
        from .refs import resolve  # refs is a leaf module; imported here to keep this one dependency-free

        cls: Any = resolve(ref)
        if not isinstance(cls, type) or getattr(cls, "kind", None) != self.kind:
            raise ValueError(f"{ref!r} is not a {self.kind} class (a subclass of the {self.kind} base "
                             f"of streamflow.api)")
        if "type_name" not in vars(cls):
            setattr(cls, "type_name", ref)  # noqa: B010 - an unregistered class is known by its import path
        return cast(T, cls)

    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._types)


class Lookup(Protocol[T_co]):
    """The read side of a `Registry` (covariant: a registry of sinks is a lookup of components)."""

    @property
    def kind(self) -> str: ...

    def get(self, name: str) -> T_co: ...

    def names(self) -> list[str]: ...


SOURCES: Registry[type[Source[Any]]] = Registry("source")
SINKS: Registry[type[Sink[Any]]] = Registry("sink")
TRANSFORMS: Registry[type[Transform[Any]]] = Registry("transform")
CODECS: Registry[type[Codec]] = Registry("codec")
FRAMINGS: Registry[type[Framing]] = Registry("framing")

_loaded = False


def load_builtins() -> None:
    """Import the built-in component packages and installed plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in BUILTIN_PACKAGES:
        importlib.import_module(package)
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()
