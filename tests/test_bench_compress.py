"""bench_compress's verdict: at every mixed budget, the best uniform plan that fits the same budget."""
from eval.benchmarks.bench_compress import budget_comparison


def _row(point, kind, cost, acc, simulated=None, budget=None):
    r = {"task": "t", "target": "neuromorphic", "point": point, "kind": kind, "cost": cost, "accuracy": acc,
         "budget": budget if budget is not None else cost}
    if simulated is not None:
        r["simulated"] = simulated
    return r


def test_mixed_is_compared_with_the_most_accurate_uniform_plan_within_its_simulated_budget():
    rows = [_row("W8A8", "uniform", 100, 0.98, 100), _row("W4A4", "uniform", 10, 0.95, 11),
            _row("W2A2", "uniform", 5, 0.20, 5),
            _row("mixed@mid", "mixed", 30, 0.96, 31, budget=33),   # W4A4 (simulated 11) is the best within 33
            _row("mixed@W4A4", "mixed", 9, 0.94, 12, budget=11)]   # over its budget when simulated, and worse
    mid, low = budget_comparison(rows)
    assert (mid["uniform"], mid["mixed_at_least_uniform"], mid["within_budget"]) == ("W4A4", True, True)
    assert (low["uniform"], low["mixed_at_least_uniform"], low["within_budget"]) == ("W4A4", False, False)
