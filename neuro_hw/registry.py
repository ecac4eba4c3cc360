"""The accelerator registry: hardware model kinds and the named accelerators built from them.

A *kind* is a hardware model (one module): its config class, its simulate function and whether it
is driven by the SNN's ActivityTrace.  An *accelerator* is a name bound to a kind and a config file
(TOML or YAML) of that kind.  Everything outside `neuro_hw` asks the registry, never a fixed name:

    neuro_hw.accelerators()                 # ["conventional", "loihi1", "loihi2", "neuromorphic-ideal"]
    neuro_hw.register_kind("my-kind", config_cls=MyConfig, simulate_fn=simulate_my, needs_trace=True)
    neuro_hw.register_accelerator("my-chip", kind="my-kind", config_path="my_chip.toml")
    cfg = neuro_hw.load_hw_config("my-chip")    # also a file path, a dict or a config object

A config class has `from_dict(d)`, `default()` and `to_dict()`; its objects carry `.name`.  The
simulate function is called as `simulate_fn(workload, trace, cfg, policy=MemoryPolicy)`.  A config
file names its kind with `kind = "..."` (the older key `accelerator = "..."` is read the same way).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class Kind:
    """A hardware model: config class, simulate function, whether it needs an ActivityTrace."""

    name: str
    config_cls: type
    simulate_fn: Callable
    needs_trace: bool


@dataclass(frozen=True)
class Accelerator:
    """A registered accelerator: a name, its kind and its config file (None: the kind's default)."""

    name: str
    kind: str
    config_path: Path | None


_KINDS: dict[str, Kind] = {}
_ACCELERATORS: dict[str, Accelerator] = {}
_ALIASES: dict[str, str] = {}
_BUILTINS_LOADED = False


def register_kind(kind: str, *, config_cls: type, simulate_fn: Callable, needs_trace: bool) -> Kind:
    """Register a hardware model kind (re-registering the same kind replaces it)."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    for attr in ("from_dict", "to_dict"):
        if not callable(getattr(config_cls, attr, None)):
            raise ValueError(f"kind {kind!r}: config class {config_cls.__name__} has no {attr}()")
    if not callable(simulate_fn):
        raise ValueError(f"kind {kind!r}: simulate_fn must be callable")
    k = Kind(kind, config_cls, simulate_fn, bool(needs_trace))
    _KINDS[kind] = k
    return k


def register_accelerator(name: str, *, kind: str, config_path=None) -> Accelerator:
    """Bind `name` to a registered kind and a config file of that kind (None: the kind's default)."""
    _ensure_builtins()
    if kind not in _KINDS:
        raise ValueError(f"unknown hardware kind {kind!r}; registered kinds: {', '.join(sorted(_KINDS))}")
    p = None if config_path is None else Path(config_path)
    if p is not None and not p.exists():
        raise FileNotFoundError(f"accelerator {name!r}: config file {p} not found")
    a = Accelerator(name, kind, p)
    _ACCELERATORS[name] = a
    _ALIASES.pop(name, None)
    return a


def register_alias(alias: str, name: str) -> None:
    """An old or short name that resolves to a registered accelerator (not listed separately)."""
    _ensure_builtins()
    if name not in _ACCELERATORS:
        raise ValueError(f"alias {alias!r}: {name!r} is not a registered accelerator")
    _ALIASES[alias] = name


def accelerators() -> list[str]:
    """Names of the registered accelerators (aliases not included)."""
    _ensure_builtins()
    return sorted(_ACCELERATORS)


def aliases() -> dict[str, str]:
    _ensure_builtins()
    return dict(_ALIASES)


def kinds() -> list[str]:
    _ensure_builtins()
    return sorted(_KINDS)


def get_kind(kind: str) -> Kind:
    _ensure_builtins()
    if kind not in _KINDS:
        raise ValueError(f"unknown hardware kind {kind!r}; registered kinds: {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]


def resolve_name(name: str) -> str:
    """The registered accelerator a name or alias stands for; ValueError listing the names."""
    _ensure_builtins()
    name = _ALIASES.get(name, name)
    if name not in _ACCELERATORS:
        raise ValueError(unknown_message(name))
    return name


def unknown_message(name) -> str:
    als = ", ".join(f"{a} -> {n}" for a, n in sorted(_ALIASES.items()))
    return (f"unknown accelerator {name!r}; registered: {', '.join(accelerators())}"
            + (f" (aliases: {als})" if als else "") + "; or give a config file path (.toml / .yaml)")


def kind_of(cfg) -> str:
    """The kind of a config object, by the registry's config classes (exact class match)."""
    _ensure_builtins()
    for k in _KINDS.values():
        if type(cfg) is k.config_cls:
            return k.name
    raise ValueError(f"{type(cfg).__name__} is not the config class of a registered hardware kind "
                     f"({', '.join(sorted(_KINDS))})")


# ---- reading configs ----------------------------------------------------------------------------
def read_config_file(path: Path) -> dict:
    path = Path(path)
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


def config_from_dict(d: dict, *, where: str = "hardware config"):
    """A config object from a dict whose `kind` (or `accelerator`) key names a registered kind."""
    _ensure_builtins()
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, got {type(d).__name__}")
    d = dict(d)
    kind = d.pop("kind", None)
    acc = d.pop("accelerator", None)
    if kind is None:
        kind = acc
    if kind in _ACCELERATORS and kind not in _KINDS:   # accelerator = "<registered name>"
        kind = _ACCELERATORS[kind].kind
    if kind not in _KINDS:
        raise ValueError(f"{where} needs kind = one of {', '.join(sorted(_KINDS))}, got {kind!r}")
    try:
        return _KINDS[kind].config_cls.from_dict(d)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def config_path(name: str) -> Path | None:
    return _ACCELERATORS[resolve_name(name)].config_path


def load_hw_config(hw):
    """A config object from a registered name or alias, a file path, a dict, or a config object
    (returned as is).  Unknown names raise ValueError listing the registered accelerators."""
    _ensure_builtins()
    if any(type(hw) is k.config_cls for k in _KINDS.values()):
        return hw
    if isinstance(hw, dict):
        return config_from_dict(hw)
    if not isinstance(hw, (str, Path)):
        raise ValueError(f"hardware must be an accelerator name, a config file or a config object, "
                         f"got {type(hw).__name__}")
    s = str(hw)
    name = _ALIASES.get(s, s)
    if name in _ACCELERATORS and not (Path(s).exists() and Path(s).is_file()):
        a = _ACCELERATORS[name]
        if a.config_path is None:
            return _KINDS[a.kind].config_cls.default()
        return config_from_dict(read_config_file(a.config_path), where=f"accelerator {name!r} ({a.config_path})")
    p = Path(s)
    if not p.is_file() and CONFIG_DIR.exists():   # a bundled file by stem (e.g. an older config)
        for ext in (".toml", ".yaml", ".yml"):
            if (CONFIG_DIR / (s + ext)).exists():
                p = CONFIG_DIR / (s + ext)
                break
    if not p.is_file():
        raise ValueError(unknown_message(s))
    return config_from_dict(read_config_file(p), where=f"hardware config {p}")


def accelerator_name(hw, cfg=None) -> str:
    """The name a report gives the accelerator `hw` was resolved from: the registered name for a
    name or alias, else the config's own name."""
    _ensure_builtins()
    if isinstance(hw, str) and (hw in _ACCELERATORS or hw in _ALIASES):
        return hw     # as the caller named it (an alias stays the alias the run was given)
    cfg = cfg if cfg is not None else load_hw_config(hw)
    return str(getattr(cfg, "name", kind_of(cfg)))


def at_node(cfg, node: str):
    """The same chip evaluated at technology node `node` (every kind scales alike: its config's
    `at_node`, or its `tech` field replaced)."""
    import dataclasses
    from neuro_hw.tech import get_tech
    get_tech(node)   # unknown node -> ValueError listing the nodes
    if callable(getattr(cfg, "at_node", None)):
        return cfg.at_node(node)
    return dataclasses.replace(cfg, tech=node)


def needs_trace(hw) -> bool:
    """Whether accelerator `hw` (name, path, dict or config) is driven by the SNN's ActivityTrace."""
    return get_kind(kind_of(load_hw_config(hw))).needs_trace


def trace_problem(hw, trace) -> str | None:
    """Why accelerator `hw` cannot run on `trace` (e.g. graded payloads on a chip without graded
    spikes), or None when it can.  Callers that sweep codings x accelerators skip such pairs and
    say so; `simulate` raises ValueError with the same message."""
    cfg = load_hw_config(hw)
    check = getattr(cfg, "check_trace", None)
    if trace is None or check is None:
        return None
    try:
        check(trace)
    except ValueError as e:
        return str(e)
    return None


def coding_problem(hw, coding: str) -> str | None:
    """Why accelerator `hw` cannot run SNNs of `coding` at all (e.g. graded payloads on a chip with
    binary spikes only), or None.  A check before any SNN runs; `trace_problem` checks the widths."""
    cfg = load_hw_config(hw)
    check = getattr(cfg, "check_coding", None)
    if check is None:
        return None
    try:
        check(coding)
    except ValueError as e:
        return str(e)
    return None


def _ensure_builtins() -> None:
    """Register the bundled kinds and accelerators on first use (imports stay lazy)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from neuro_hw.conventional import ConventionalConfig, simulate_conventional
    from neuro_hw.loihi import LoihiConfig, simulate_loihi
    from neuro_hw.neuromorphic import NeuromorphicConfig, simulate_neuromorphic
    register_kind("conventional", config_cls=ConventionalConfig,
                  simulate_fn=lambda w, t, cfg, policy=None: simulate_conventional(w, cfg, policy=policy),
                  needs_trace=False)
    register_kind("neuromorphic", config_cls=NeuromorphicConfig, simulate_fn=simulate_neuromorphic,
                  needs_trace=True)
    register_kind("loihi", config_cls=LoihiConfig, simulate_fn=simulate_loihi, needs_trace=True)
    register_accelerator("conventional", kind="conventional", config_path=CONFIG_DIR / "conventional.toml")
    register_accelerator("neuromorphic-ideal", kind="neuromorphic", config_path=CONFIG_DIR / "neuromorphic.toml")
    register_accelerator("loihi1", kind="loihi", config_path=CONFIG_DIR / "loihi1.toml")
    register_accelerator("loihi2", kind="loihi", config_path=CONFIG_DIR / "loihi2.toml")
    register_alias("neuromorphic", "neuromorphic-ideal")
