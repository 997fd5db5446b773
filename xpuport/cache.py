"""The compile cache: finished artifacts keyed by everything that shapes the generated code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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
    """Graph hash + backend cache key (toolchain) + profile + options + our versions."""
    identity = {
        "graph": source_hash,
        "backend": backend_key,
        "profile": profile,
        "options": options,
        "versions": environment_versions(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


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
