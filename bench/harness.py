"""What every workload of the suite shares: interleaved A/B rounds, medians, ratios, the report.

A workload measures its subject (A) and its baseline (B) in the same run, one
round of each alternately (A B, then B A, ...) so that the machine's drift hits
both alike. Absolute figures on these machines move 10-15 % between runs; the
per-round ratio A/B is what a target is set on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Comparison:
    """One workload's rounds of A and B, and the target its median ratio must meet."""

    workload: str  # "W2 one 10,000-voucher order"
    a_label: str  # "place_order (service)"
    b_label: str  # "raw asyncpg generate + seal + COPY"
    unit: str  # what a round measures: "s", "ms", "ops/s", "pages/s", ...
    higher_is_better: bool  # True for rates, False for times
    target: str  # as the issue states it: "ratio <= 2.0"
    max_ratio: float | None = None  # passes when median(A/B) <= max_ratio
    min_ratio: float | None = None  # passes when median(A/B) >= min_ratio
    rounds: list[tuple[float, float]] = field(default_factory=list)
    # Further figures with their own pass/fail: name -> (text, passed or None when only informative).
    extra: dict[str, tuple[str, bool | None]] = field(default_factory=dict)
    # Correctness, not speed: name -> (text, held). These must hold at every size, --quick
    # included (rows written, files identical, exactly one winner), where ratios and the
    # `extra` figures are only printed.
    checks: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in self.rounds if b]

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def passed(self) -> bool:
        ratio = self.median_ratio
        ok = ratio == ratio  # not NaN
        if self.max_ratio is not None:
            ok = ok and ratio <= self.max_ratio
        if self.min_ratio is not None:
            ok = ok and ratio >= self.min_ratio
        return ok and self.correct and all(flag is not False for _, flag in self.extra.values())

    @property
    def correct(self) -> bool:
        """Every correctness check held (and at least one round ran)."""
        return bool(self.rounds) and all(held for _, held in self.checks.values())

    def check(self, name: str, held: bool, text: str = "") -> bool:
        """Record a correctness check; returns `held` so a workload can stop on a failure."""
        self.checks[name] = (text or ("held" if held else "FAILED"), held)
        return held


async def interleave(
    a: Callable[[], Awaitable[float]],
    b: Callable[[], Awaitable[float]],
    rounds: int,
    *,
    show: Comparison | None = None,
    deadline: float | None = None,
) -> list[tuple[float, float]]:
    """Run `rounds` rounds of A and B, alternating which goes first; each callable returns its figure.

    With a `deadline` (a time.monotonic() instant), no round starts that would end after it at
    the pace of the round before, the first excepted: a suite bounded in time keeps the rounds
    it finished instead of being cut off in the middle of one.
    """
    results: list[tuple[float, float]] = []
    last = 0.0
    for i in range(rounds):
        if i and not fits(deadline, last):
            if show is not None:
                print(f"  {show.workload}: no time for another round, stopping after {i}", flush=True)
            break
        begun = time.monotonic()
        if i % 2 == 0:
            fa = await a()
            fb = await b()
        else:
            fb = await b()
            fa = await a()
        results.append((fa, fb))
        last = time.monotonic() - begun
        if show is not None:
            show_round(show, i + 1, fa, fb)
    return results


def fits(deadline: float | None, seconds: float) -> bool:
    """Whether work of `seconds` started now ends before `deadline` (None: no deadline)."""
    return deadline is None or time.monotonic() + seconds <= deadline


def show_round(c: Comparison, number: int, fa: float, fb: float) -> None:
    """Print one round as interleave does, for a workload that runs its rounds itself."""
    ratio = fa / fb if fb else float("nan")
    print(f"  {c.workload} round {number}: A {fa:.4g} {c.unit}  B {fb:.4g} {c.unit}  A/B {ratio:.3f}", flush=True)


def report(comparisons: list[Comparison]) -> bool:
    """Print each workload's medians and median ratio against its target; True when all pass."""
    print("\n==== summary ====")
    ok = True
    for c in comparisons:
        a = statistics.median([r[0] for r in c.rounds]) if c.rounds else float("nan")
        b = statistics.median([r[1] for r in c.rounds]) if c.rounds else float("nan")
        verdict = "PASS" if c.passed else "MISS"
        ok = ok and c.passed
        print(f"{verdict} {c.workload}: A {a:.4g} {c.unit} ({c.a_label}) | B {b:.4g} {c.unit} ({c.b_label})")
        print(f"     median of per-round A/B = {c.median_ratio:.3f}  target {c.target}  rounds {len(c.rounds)}")
        for name, (text, flag) in c.extra.items():
            mark = "" if flag is None else (" ok" if flag else " MISS")
            print(f"     {name}: {text}{mark}")
        for name, (text, held) in c.checks.items():
            print(f"     check {name}: {text}{'' if held else ' FAILED'}")
    return ok


def all_correct(comparisons: list[Comparison]) -> bool:
    """Every workload's correctness checks held: what --quick requires (its ratios are only printed)."""
    return all(c.correct for c in comparisons)
