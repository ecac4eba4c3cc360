"""The verdict of a task in one sentence, computed from its iso-accuracy view (eval.compare).

At iso-accuracy (every configuration within the tolerance of FP32 accuracy), the cheapest
configuration on any SNN-driven accelerator is set against the cheapest on any dense one (an
accelerator that runs the QANN without a trace); the sentence names both and says which needs how
many times less energy.  Where one side has no configuration within the tolerance, it says that.
"""
from __future__ import annotations

from collections.abc import Callable


def _config(c: dict, accelerator: str, spiking: bool) -> str:
    """(loihi2, graded, W8A4): accelerator, coding (spiking only) and bit widths."""
    bits = c["label"].split("-", 1)[0]
    if not spiking:  # "the conventional accelerator (W8A8)": its name is already in the sentence
        return f"({bits})"
    parts = [accelerator] + ([c["coding"]] if c.get("coding") else []) + [bits]
    return "(" + ", ".join(parts) + ")"


def _cheapest(choices: dict, names: list[str]) -> tuple[str, dict] | None:
    ok = [(a, choices[a]) for a in names if choices.get(a) and choices[a]["within_tolerance"]]
    return min(ok, key=lambda p: p[1]["energy_per_unit_pj"]) if ok else None


def _times(r: float) -> str:
    return f"{r:.3g}×" if r < 1000 else f"{r:,.0f}×"


def verdict(task: str, iso: dict, needs_trace: Callable[[str], bool], unit: str = "inference") -> dict:
    """{"text", "ratio", "winner", "spiking", "dense"} for one task.

    iso: the task's iso-accuracy view ({"tolerance", "choices": {accelerator: choice | None}});
    needs_trace(accelerator): whether it is SNN-driven.  ratio = energy of the best spiking
    configuration / energy of the best dense one (above 1: the dense accelerator needs ratio x
    less); winner: "dense", "spiking", "tie" or None when one side has nothing within tolerance."""
    choices = iso["choices"]
    spiking_names = [a for a in choices if needs_trace(a)]
    dense_names = [a for a in choices if not needs_trace(a)]
    pts = 100 * iso["tolerance"]
    tol = f"within {pts:.3g} point{'' if pts == 1 else 's'} of FP32 accuracy"
    s, d = _cheapest(choices, spiking_names), _cheapest(choices, dense_names)
    out = {"ratio": None, "winner": None,
           "spiking": None if s is None else {"accelerator": s[0], **_brief(s[1])},
           "dense": None if d is None else {"accelerator": d[0], **_brief(d[1])}}
    if s is None or d is None:
        missing = [side for side, names, got in (("spiking", spiking_names, s), ("dense", dense_names, d))
                   if got is None and names]
        if not spiking_names or not dense_names:
            have = s or d
            out["text"] = (f"On {task} only {'spiking' if spiking_names else 'dense'} accelerators were "
                           "run: no comparison" + ("" if have is None else
                                                   f"; the cheapest {tol} is {have[0]} {_config(have[1], have[0], bool(spiking_names))} at "
                                                   f"{_energy(have[1]['energy_per_unit_pj'])} per {unit}") + ".")
        else:
            out["text"] = (f"On {task} no {' and no '.join(missing)} configuration is {tol} "
                           f"(tolerance {iso['tolerance']:g}): no iso-accuracy verdict.")
        return out
    es, ed = s[1]["energy_per_unit_pj"], d[1]["energy_per_unit_pj"]
    ratio = es / ed if ed > 0 else float("inf")
    out["ratio"] = ratio
    if ratio > 1:
        out["winner"] = "dense"
        text = (f"the {d[0]} accelerator {_config(d[1], d[0], False)} needs {_times(ratio)} less energy per {unit} "
                f"than the best spiking configuration {_config(s[1], s[0], True)}")
    elif ratio < 1:
        out["winner"] = "spiking"
        text = (f"the best spiking configuration {_config(s[1], s[0], True)} needs {_times(1 / ratio)} less energy "
                f"per {unit} than the {d[0]} accelerator {_config(d[1], d[0], False)}")
    else:
        out["winner"] = "tie"
        text = (f"the best spiking configuration {_config(s[1], s[0], True)} and the {d[0]} accelerator "
                f"{_config(d[1], d[0], False)} need the same energy per {unit}")
    out["text"] = (f"On {task} at iso-accuracy ({tol}) {text}: {_energy(es)} against {_energy(ed)}.")
    return out


def _brief(c: dict) -> dict:
    return {k: c.get(k) for k in ("label", "coding", "accuracy", "energy_per_unit_pj")}


def _energy(pj: float) -> str:
    from eval.fmt import fmt_energy
    return fmt_energy(pj)
