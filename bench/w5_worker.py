"""One `vouchsafe worker` for W5: the standalone worker, plus a health-check key of its own and a lifetime.

    BENCH_WORKER_HEALTH_KEY=... BENCH_WORKER_LIFETIME=900 python -m bench.w5_worker

The settings come from the environment as for `vouchsafe worker`. arq records the
health-check key on its first poll, after start-up (database open, relay running): the
suite waits for it before timing anything. SIGALRM ends the process after its lifetime
whatever becomes of the suite.
"""

from __future__ import annotations

import logging
import os
import signal

from settings import load_settings
from workers.options import worker_options
from workers.worker import VouchsafeWorker


def main() -> None:
    signal.alarm(int(os.environ["BENCH_WORKER_LIFETIME"]))
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s w5-worker %(levelname)s %(message)s")
    worker = VouchsafeWorker(
        **worker_options(settings, embedded=False), health_check_key=os.environ["BENCH_WORKER_HEALTH_KEY"]
    )
    worker.run()


if __name__ == "__main__":
    main()
