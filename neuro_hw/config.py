"""Hardware configurations as files users edit (TOML or YAML), validated with clear errors.

A file names its accelerator and overrides the defaults of that accelerator's config dataclass:

    accelerator = "neuromorphic"      # or "conventional"
    tech = "45nm"
    [cores] ...                        # sections as the dataclass defines them

Bundled names: ``neuromorphic`` and ``conventional`` (the defaults), and every file in
``neuro_hw/configs/`` by stem.
"""
from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def _config_classes() -> dict:
    from neuro_hw.conventional import ConventionalConfig
    from neuro_hw.neuromorphic import NeuromorphicConfig
    return {"neuromorphic": NeuromorphicConfig, "conventional": ConventionalConfig}


def bundled_configs() -> list[str]:
    names = {"neuromorphic", "conventional"}
    if CONFIG_DIR.exists():
        names |= {p.stem for p in CONFIG_DIR.iterdir() if p.suffix in (".toml", ".yaml", ".yml")}
    return sorted(names)


def read_config_file(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"hardware config {path} not found")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml
            d = yaml.safe_load(text)
            if not isinstance(d, dict):
                raise ValueError("top level is not a mapping")
            return d
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"hardware config {path} cannot be parsed: {e}") from e
    raise ValueError(f"hardware config {path}: unknown extension {path.suffix!r}; use .toml, .yaml or .yml")


def config_from_dict(d: dict):
    classes = _config_classes()
    d = dict(d)
    kind = d.pop("accelerator", None)
    if kind not in classes:
        raise ValueError(f"hardware config needs 'accelerator' = one of {sorted(classes)}, got {kind!r}")
    return classes[kind].from_dict(d)


def load_hw_config(name_or_path):
    """A config object from a bundled name, a file path, a dict, or a config object (returned as is)."""
    classes = _config_classes()
    if isinstance(name_or_path, tuple(classes.values())):
        return name_or_path
    if isinstance(name_or_path, dict):
        return config_from_dict(name_or_path)
    s = str(name_or_path)
    if s in classes and not Path(s).exists():
        return classes[s].default()
    p = Path(s)
    if not p.exists() and CONFIG_DIR.exists():
        for ext in (".toml", ".yaml", ".yml"):
            if (CONFIG_DIR / (s + ext)).exists():
                p = CONFIG_DIR / (s + ext)
                break
    if not p.exists():
        raise FileNotFoundError(f"hardware config {s!r} is neither a file nor a bundled name "
                                f"({', '.join(bundled_configs())})")
    return config_from_dict(read_config_file(p))
