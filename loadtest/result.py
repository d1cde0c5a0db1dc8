"""What ``run_gate`` returns: the verdict, its reasons, the figures and where the reports are."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .figures import TargetFigures
from .policy import GatePolicy


@dataclass(frozen=True)
class GateResult:
    """One gate run. ``verdict`` is "pass", "fail" or "inconclusive"; ``generator_cpu`` is
    the Locust process's CPU over the measured window in cores (nan if unknown)."""

    verdict: str
    reasons: tuple[str, ...]
    policy: GatePolicy
    figures: dict[str, TargetFigures]
    generator_cpu: float
    report_json: Path
    report_html: Path
    locust_html: Path | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nan becomes None, paths become strings)."""
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "policy": self.policy.to_dict(),
            "figures": {name: fig.to_dict() for name, fig in self.figures.items()},
            "generator_cpu": None if math.isnan(self.generator_cpu) else self.generator_cpu,
            "report_json": str(self.report_json),
            "report_html": str(self.report_html),
            "locust_html": None if self.locust_html is None else str(self.locust_html),
        }
