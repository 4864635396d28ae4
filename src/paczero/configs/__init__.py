"""Configs shipped inside the package, so that an installed ``paczero`` finds them by name.

``paczero train --config demo`` reads ``demo.yaml`` from here when no file named ``demo`` exists in the
working directory; any path to a YAML file works as before.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_configs() -> dict[str, Path]:
    """Name → path of every config shipped with paczero (``demo``: the CPU demo)."""
    folder = Path(str(resources.files(__name__)))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config(path_or_name: str | Path) -> Path:
    """A config path as given if such a file exists, else the shipped config of that name."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if path.parent == Path(".") and name in shipped:
        return shipped[name]
    if path.parent == Path(".") and not path.suffix:
        raise FileNotFoundError(
            f"config {str(path_or_name)!r} is neither a file nor a shipped config ({', '.join(shipped)})"
        )
    return path  # let the loader report the missing file as it always has
