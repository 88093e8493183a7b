"""What the suite's entry point hands each workload: where the seeded data set lives, and the time left.

The entry point has closed its own ORM connections before it calls `run(ctx)`: a workload
opens what it needs (services.database.open_db(ctx.database_url, ...)) and closes it; the
entry point closes the ORM after each workload all the same. Correctness goes into
Comparison.checks (judged in --quick too), figures into Comparison.extra.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchContext:
    server_url: str  # the loopback PostgreSQL server (postgres://...), for throwaway databases of a workload's own
    database_url: str  # the database the entry point seeded (migrated, 50 partner accounts, ~1,000,000 vouchers)
    redis_url: str  # loopback Redis; a workload uses its own key namespace (queue name)
    code_key: bytes  # VOUCHSAFE_CODE_KEY of the seeded data: codes decrypt with it
    secret_key: bytes  # VOUCHSAFE_SECRET_KEY for servers a workload starts on the seeded data
    quick: bool  # small sizes, the whole suite under a minute (the CI smoke step)
    deadline: float  # time.monotonic() by which a workload must have stopped

    def time_left(self) -> float:
        return self.deadline - time.monotonic()
