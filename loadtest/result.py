"""What ``run_gate`` returns: the verdict, its reasons, the figures and where the reports are."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evidence import Evidence
from .figures import TargetFigures
from .policy import GatePolicy
from .samples import HostCPU


@dataclass(frozen=True)
class GateResult:
    """One gate run. ``verdict`` is "pass", "fail" or "inconclusive"; ``evidence`` holds the
    intervals and stalls it was decided on; ``generator_cpu`` is the busiest Locust
    process's CPU over the measured window in cores (nan if unknown), ``host`` what the
    host's CPUs did meanwhile; ``measured_s`` the measured seconds over ``rounds`` Locust
    runs (more than one when it extended itself)."""

    verdict: str
    reasons: tuple[str, ...]
    policy: GatePolicy
    figures: dict[str, TargetFigures]
    evidence: Evidence
    generator_cpu: float
    host: HostCPU
    measured_s: float
    rounds: int
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
            "evidence": self.evidence.to_dict(),
            "measured_s": self.measured_s,
            "rounds": self.rounds,
            "generator_cpu": None if math.isnan(self.generator_cpu) else self.generator_cpu,
            "host_cpu": self.host.to_dict(),
            "report_json": str(self.report_json),
            "report_html": str(self.report_html),
            "locust_html": None if self.locust_html is None else str(self.locust_html),
        }
