"""The rate search both capacity measurements share: double, then bisect."""

from __future__ import annotations

from collections.abc import Callable

from .verdict import INCONCLUSIVE, PASS


def highest_passing_rate(
    verdict_at: Callable[[float], str],
    *,
    start_rate: float,
    max_rate: float,
    resolution: float,
    min_rate: float | None = None,
) -> tuple[float, str]:
    """The highest rate ``verdict_at`` passes, and what limited it.

    Doubles from ``start_rate`` until a rate does not pass (or ``max_rate`` passes), then
    bisects until the bracket is narrower than ``resolution`` (relative). If ``start_rate``
    itself does not pass and ``min_rate`` is given, halves down to ``min_rate`` first (a
    busy machine). Returns ``(rate, limited_by)``: rate 0.0 if none passed; limited_by
    "ceiling" (``max_rate`` passed), "generator" (the lowest rate that did not pass was
    inconclusive: the true capacity may be higher) or "target".
    """
    good, bad, bad_verdict = 0.0, 0.0, PASS
    rate = start_rate
    while True:
        verdict = verdict_at(rate)
        if verdict != PASS:
            bad, bad_verdict = rate, verdict
            break
        good = rate
        if rate >= max_rate:
            return good, "ceiling"
        rate = min(rate * 2, max_rate)
    while min_rate is not None and good == 0 and bad / 2 >= min_rate:
        verdict = verdict_at(bad / 2)
        if verdict == PASS:
            good = bad / 2
        else:
            bad, bad_verdict = bad / 2, verdict
    while good > 0 and (bad - good) / good > resolution:
        middle = (good + bad) / 2
        verdict = verdict_at(middle)
        if verdict == PASS:
            good = middle
        else:
            bad, bad_verdict = middle, verdict
    return good, "generator" if bad_verdict == INCONCLUSIVE else "target"
