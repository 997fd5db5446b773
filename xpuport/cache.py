"""The compile cache: finished artifacts keyed by everything that shapes the generated code."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pkgutil
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import xpuport
from xpuport.errors import ArtifactError
from xpuport.lowering.artifact import environment_versions, read_manifest

CACHE_DIR_ENV = "XPUPORT_CACHE_DIR"


def cache_root() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xpuport"


def compile_key(
    source_hash: str, backend_key: str, profile: dict[str, Any], options: dict[str, Any]
) -> str:
    """Graph hash + backend cache key (toolchain) + profile + options + our versions, and
    xpuport's own code (source_digest): a change to a schedule or a pass changes what compile
    makes without changing the version, and would otherwise be served the artifacts before it."""
    identity = {
        "graph": source_hash,
        "backend": backend_key,
        "profile": profile,
        "options": options,
        "versions": environment_versions(),
        "xpuport_source": source_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


@cache
def source_digest() -> str:
    """A digest of xpuport's Python sources and data files, by module path: the same from a
    checkout and from an (editable) install, whose link tree is followed."""
    digest = hashlib.sha256()
    for name, path in sorted(_source_files()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_SOURCE_SUFFIXES = (".py", ".toml", ".json")


def _source_files() -> Iterator[tuple[str, Path]]:
    """(name under xpuport/, file) for each source file of xpuport's modules and packages
    (the subpackages live in top-level folders of a checkout: xpuport/__init__.py)."""
    yield "__init__.py", Path(xpuport.__file__)
    for module in pkgutil.iter_modules(xpuport.__path__):
        spec = importlib.util.find_spec(f"xpuport.{module.name}")
        if module.name == "xpuport" or spec is None:  # a checkout's root is on __path__
            continue
        if not module.ispkg:
            if spec.origin:
                yield f"{module.name}.py", Path(spec.origin)
            continue
        for root in spec.submodule_search_locations or []:
            for folder, subfolders, files in os.walk(root, followlinks=True):
                subfolders[:] = [d for d in subfolders if d != "__pycache__"]
                for file in files:
                    if file.endswith(_SOURCE_SUFFIXES):
                        path = Path(folder, file)
                        yield f"{module.name}/{path.relative_to(root)}", path


class CompileCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "compile"

    def lookup(self, key: str) -> Path | None:
        """A verified cached artifact, or None; a damaged entry is dropped, not trusted."""
        entry = self.root / key
        if not entry.is_dir():
            return None
        try:
            read_manifest(entry)
        except ArtifactError:
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return entry

    def store(self, key: str, artifact_dir: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            shutil.copytree(artifact_dir, staging, dirs_exist_ok=True)
            if not (self.root / key).exists():
                staging.rename(self.root / key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
