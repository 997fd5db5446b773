"""Discover backends through entry points; a broken plugin is listed, never fatal."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from xpuport.backends.base import API_VERSION, Backend
from xpuport.errors import PluginError, UnknownBackendError

ENTRY_POINT_GROUP = "xpuport.backends"
BUILTIN_DISTRIBUTION = "xpuport"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    origin: str  # "builtin" or "plugin"
    source: str  # distribution and entry-point value, for the user to find it
    backend_class: type[Backend] | None
    error: str | None

    def available(self) -> bool:
        if self.backend_class is None:
            return False
        try:
            return bool(self.backend_class().is_available())
        except Exception:  # noqa: BLE001  # a plugin's probe may raise anything; it means "no"
            return False

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "origin": self.origin,
            "source": self.source,
            "available": self.available(),
            "error": self.error,
        }


@cache
def discover() -> tuple[BackendEntry, ...]:
    """Every registered backend, loaded and validated; errors are kept, not raised."""
    found = {(ep.name, ep.value): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    entries = [_load(ep) for ep in found.values()]
    return tuple(sorted(_refuse_shadowing(entries), key=lambda entry: entry.name))


def _refuse_shadowing(entries: list[BackendEntry]) -> list[BackendEntry]:
    """Two packages claiming one name: neither wins silently, both are listed with the error."""
    sources: dict[str, list[str]] = {}
    for entry in entries:
        sources.setdefault(entry.name, []).append(entry.source)
    return [
        replace(
            entry,
            backend_class=None,
            error=f"name '{entry.name}' is registered by {' and '.join(sources[entry.name])}; "
            "uninstall one of them",
        )
        if len(sources[entry.name]) > 1
        else entry
        for entry in entries
    ]


def get_backend(name: str) -> Backend:
    entries = {entry.name: entry for entry in discover()}
    entry = entries.get(name)
    if entry is None:
        raise UnknownBackendError(
            f"unknown backend '{name}'",
            f"use one of: {', '.join(sorted(entries)) or '(none registered)'} "
            "(see `xpuport backends`); a plugin must be pip-installed to register",
        )
    if entry.backend_class is None:
        raise UnknownBackendError(
            f"backend '{name}' failed to load: {entry.error}",
            f"fix or reinstall the package that provides it ({entry.source})",
        )
    return entry.backend_class()


def _load(ep: EntryPoint) -> BackendEntry:
    dist = ep.dist.name if ep.dist else "unknown"
    origin = "builtin" if dist == BUILTIN_DISTRIBUTION else "plugin"
    source = f"{dist}: {ep.value}"
    try:
        backend_class = validate(ep.name, ep.load())
    except PluginError as exc:
        return BackendEntry(ep.name, origin, source, None, f"{exc.message} (fix: {exc.fix})")
    except Exception as exc:  # noqa: BLE001  # a plugin's import may raise anything; list it
        error = f"import failed: {exc.__class__.__name__}: {exc}"
        return BackendEntry(ep.name, origin, source, None, error)
    return BackendEntry(ep.name, origin, source, backend_class, None)


def validate(name: str, loaded: object) -> type[Backend]:
    """Check that an entry point's object is one concrete Backend of our API version."""
    backend_class = _single_backend(loaded) if isinstance(loaded, ModuleType) else loaded
    if not (inspect.isclass(backend_class) and issubclass(backend_class, Backend)):
        raise PluginError(
            f"entry point '{name}' gives {loaded!r}, not a Backend subclass",
            "point the entry point at your Backend subclass (module:Class)",
        )
    if inspect.isabstract(backend_class):
        missing = ", ".join(sorted(backend_class.__abstractmethods__))
        raise PluginError(
            f"{backend_class.__name__} does not implement: {missing}",
            "implement every abstract method of xpuport.backends.base.Backend",
        )
    if backend_class.api_version != API_VERSION:
        raise PluginError(
            f"{backend_class.__name__} targets backend API {backend_class.api_version}, "
            f"this xpuport speaks {API_VERSION}",
            "update the plugin for this xpuport, or install a matching xpuport",
        )
    if getattr(backend_class, "name", None) != name:
        raise PluginError(
            f"{backend_class.__name__}.name is {getattr(backend_class, 'name', None)!r}, "
            f"but it is registered as '{name}'",
            "make the entry point's name and the class's `name` the same",
        )
    return backend_class


def _single_backend(module: ModuleType) -> object:
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Backend)
        and obj is not Backend
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise PluginError(
            f"module {module.__name__} defines {len(found)} Backend subclasses, not exactly one",
            "point the entry point at the class itself (module:Class)",
        )
    return found[0]
