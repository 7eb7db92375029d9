"""The methods that fourd_ns registers through its installed entry points (what `ns-train --help` lists)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict

from nerfstudio.plugins.types import MethodSpecification


def registered_methods() -> Dict[str, MethodSpecification]:
    found = {}
    for entry in entry_points(group="nerfstudio.method_configs"):
        if entry.value.startswith("fourd_ns."):
            spec = entry.load()
            found[spec.config.method_name] = spec
    return found
