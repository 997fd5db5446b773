"""xpuport: one model, every accelerator, with proof."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("xpuport")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# The subpackages live in top-level folders (ir/, lowering/, ...), mapped by package-dir when
# installed. Imported straight from a checkout (its root on sys.path), find them there too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and str(_checkout) not in __path__:
    __path__.append(str(_checkout))

# Imported after __path__ is set; `compile` is the verb users expect, shadowing on purpose.
from xpuport.api import compile, conform, export, load, tune  # noqa: A004, E402
from xpuport.lowering.artifact import Artifact  # noqa: E402

__all__ = ["Artifact", "__version__", "compile", "conform", "export", "load", "tune"]
