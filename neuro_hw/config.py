"""Hardware configurations as files users edit (TOML or YAML), validated with clear errors.

A file names its hardware model kind and overrides the defaults of that kind's config class:

    kind = "neuromorphic"             # a registered kind (neuro_hw.registry); older files say
    tech = "45nm"                     # accelerator = "neuromorphic" | "conventional", read the same
    [cores] ...                       # sections as the config class defines them

Names: the registered accelerators (`neuro_hw.accelerators()`), their aliases ("neuromorphic" ->
"neuromorphic-ideal"), and every other file in ``neuro_hw/configs/`` by stem.  The registry
(`neuro_hw.registry`) does the work; this module keeps the older entry points.
"""
from __future__ import annotations

from neuro_hw.registry import (CONFIG_DIR, accelerators, aliases, config_from_dict, load_hw_config,
                               read_config_file)


def bundled_configs() -> list[str]:
    """Registered accelerator names, their aliases and the other bundled config files by stem."""
    names = set(accelerators()) | set(aliases())
    if CONFIG_DIR.exists():
        names |= {p.stem for p in CONFIG_DIR.iterdir() if p.suffix in (".toml", ".yaml", ".yml")}
    return sorted(names)


__all__ = ["CONFIG_DIR", "bundled_configs", "config_from_dict", "load_hw_config", "read_config_file"]
