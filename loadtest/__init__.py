"""The load-test gate: drive a candidate (and live) open-loop with Locust, judge, report.

Locust itself runs only in its own process (``loadtest/locustfile.py``); nothing importable
from here imports locust.
"""

from .capacity import CapacityResult, find_capacity
from .evidence import Evidence, gather
from .figures import TargetFigures
from .policy import GatePolicy, Target
from .result import GateResult
from .runner import run_gate
from .search import highest_passing_rate
from .shadow import ShadowResult, run_shadow
from .verdict import FAIL, INCONCLUSIVE, MAX_GENERATOR_CPU, PASS, Verdict, evaluate

__all__ = [
    "FAIL",
    "INCONCLUSIVE",
    "MAX_GENERATOR_CPU",
    "PASS",
    "CapacityResult",
    "Evidence",
    "GatePolicy",
    "GateResult",
    "ShadowResult",
    "Target",
    "TargetFigures",
    "Verdict",
    "evaluate",
    "find_capacity",
    "gather",
    "highest_passing_rate",
    "run_gate",
    "run_shadow",
]
