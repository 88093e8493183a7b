"""Prometheus instruments and their exposition, for one process or several (`serve --workers N`).

Each layer owns its instruments (web: HTTP; schema: GraphQL; services: outbox and rate
limits; workers: jobs and webhooks) and makes them with the helpers here, which know
nothing of the domain. With PROMETHEUS_MULTIPROC_DIR set (by `serve --workers N`, before
any process imports prometheus_client) every process writes its values to files there and
any process's /metrics answers for all of them.

Values that are read rather than counted (outbox rows by status, the queue's depth) are
measured when scraped and given to `exposition` as a Snapshot.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Latency buckets from 5 ms to 10 s: a redemption takes milliseconds, a PDF chunk seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0)
GaugeMode = Literal["livesum", "livemin", "livemax", "liveall", "mostrecent"]


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """A counter; its name ends in `_total` (Prometheus' convention, and the exposition's)."""
    assert name.endswith("_total"), name
    return Counter(name.removesuffix("_total"), documentation, labelnames=tuple(labels))


def histogram(
    name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram:
    assert name.endswith("_seconds"), name
    return Histogram(name, documentation, labelnames=tuple(labels), buckets=tuple(buckets))


def gauge(name: str, documentation: str, labels: Sequence[str] = (), *, mode: GaugeMode = "livesum") -> Gauge:
    """A gauge of this process; `mode` says how several processes' values combine (live: running ones only)."""
    return Gauge(name, documentation, labelnames=tuple(labels), multiprocess_mode=mode)


@dataclass
class Snapshot:
    """Gauges measured at scrape time: name -> (help, [(labels, value)])."""

    gauges: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] = field(default_factory=dict)

    def add(self, name: str, documentation: str, value: float, **labels: str) -> None:
        self.gauges.setdefault(name, (documentation, []))[1].append((labels, value))


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, (documentation, samples) in self.snapshot.gauges.items():
            names = sorted({key for labels, _ in samples for key in labels})
            family = GaugeMetricFamily(name, documentation, labels=names)
            for labels, value in samples:
                family.add_metric([labels.get(key, "") for key in names], value)
            yield family


def exposition(snapshot: Snapshot | None = None) -> bytes:
    """The text format of every process's instruments (or this one's), then the scrape's own measurements."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if snapshot is not None and snapshot.gauges:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(_SnapshotCollector(snapshot))
        text += generate_latest(extra)
    return text


def prepare_multiprocess_dir(path: Path) -> None:
    """An empty directory for the processes' files, named in the environment their children inherit.

    Emptied at every start: files of an earlier run's processes would be added to this run's counts.
    """
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


def forget_dead_processes() -> int:
    """Drop the live gauges of processes that ended without saying so (killed; uvicorn started another)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return 0
    pids = {
        int(m.group(1)) for p in Path(directory).glob("gauge_live*_*.db") if (m := re.search(r"_(\d+)\.db$", p.name))
    }
    dead = [pid for pid in pids if not _alive(pid)]
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return len(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def process_exiting(pid: int | None = None) -> None:
    """Drop this process's live gauges from the shared files (its counters stay counted)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid or os.getpid(), directory)  # type: ignore[no-untyped-call]
