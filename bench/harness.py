"""What every workload shares: the context it is handed, interleaved A/B rounds, and the report.

A workload measures its subject (A) and its baseline (B) in the same run, one round of each
alternately (A B, then B A, ...), so that the machine's drift hits both alike. Absolute
figures on these machines move 10-15 % between runs; the per-round ratio A/B is what a
target is set on (bench/README.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Round = Callable[[], Awaitable[float]]


@dataclass(frozen=True)
class BenchContext:
    """What `run(ctx)` of a workload is handed. The ORM is closed: a workload opens what it needs and closes it."""

    server_url: str  # the loopback PostgreSQL server, for databases of a workload's own
    database_url: str  # the suite's database: migrated, and seeded when a selected workload needs the data set
    redis_url: str  # loopback Redis; a workload keeps to keys named with `name(...)`
    code_key: bytes  # VOUCHSAFE_CODE_KEY of the seeded data: its codes open with it
    secret_key: bytes  # VOUCHSAFE_SECRET_KEY for servers a workload starts on the seeded data
    prefix: str  # this run's name: every database, queue and key namespace it makes starts with it
    quick: bool  # small sizes (the CI smoke step): correctness is judged, ratios are printed
    deadline: float  # time.monotonic() by which a workload must have stopped
    profile: bool = False  # after its rounds, a workload with a profiler shows where A's time goes
    against: str | None = None  # another checkout's `vouchsafe` executable: B over HTTP is its serve

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def name(self, part: str) -> str:
        """A database, queue or key namespace of this run (`bench_123_ab12cd_w3`): the entry point drops them all."""
        return f"{self.prefix}_{part}"


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

    def show(self, number: int, fa: float, fb: float) -> None:
        """Print one round as it ends."""
        ratio = fa / fb if fb else float("nan")
        print(
            f"  {self.workload} round {number}: A {fa:.4g} {self.unit}  B {fb:.4g} {self.unit}  A/B {ratio:.3f}",
            flush=True,
        )


def skipped(workload: str, unit: str, why: str) -> Comparison:
    """A comparison that did not run (too little time left): a full run counts it as a miss."""
    c = Comparison(workload, "", "", unit, False, "not run")
    c.check("ran", False, why)
    return c


async def interleave(
    a: Round, b: Round, rounds: int, *, show: Comparison, deadline: float
) -> list[tuple[float, float]]:
    """Run `rounds` rounds of A and B, alternating which goes first; each callable returns its figure.

    No round starts that would end after `deadline` (a time.monotonic() instant) at the pace
    of the round before, the first excepted: a run bounded in time keeps the rounds it
    finished instead of being cut off in the middle of one.
    """
    results: list[tuple[float, float]] = []
    last = 0.0
    for i in range(rounds):
        if i and not fits(deadline, last):
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
        show.show(i + 1, fa, fb)
    return results


def fits(deadline: float, seconds: float) -> bool:
    """Whether work of `seconds` started now ends before `deadline`."""
    return time.monotonic() + seconds <= deadline


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
