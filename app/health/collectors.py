"""The metrics read from the database at scrape time: the queue, worker liveness, labeling and training.

They come from the database, not from process memory, so every web process answers the same numbers and
the worker (another process, perhaps another machine) needs no metrics endpoint of its own. Each scrape runs
a handful of aggregate queries; a database that is down yields `prefloop_database_up 0` and nothing else.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.health import queries
from app.models import utcnow
from app.models.enums import JobStatus, VersionKind

log = logging.getLogger("prefloop.metrics")

ACTIVE_WINDOW = timedelta(minutes=15)
DURATION_WINDOW = 200  # finished jobs the duration quantiles are taken over
QUANTILES = (0.5, 0.9, 1.0)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class DatabaseCollector(Collector):
    """A prometheus_client collector whose `collect()` runs the scrape-time queries of app.health.queries."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("prefloop_database_up", "1 when the scrape-time queries succeeded")
        try:
            with self.session_factory() as db:
                families = list(self._families(db))
                db.rollback()
        except SQLAlchemyError as exc:
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, db: Session) -> Iterator[Metric]:
        now = utcnow()
        jobs = GaugeMetricFamily("prefloop_jobs", "Jobs in the queue table by kind and status",
                                 labels=["kind", "status"])
        counts = {(kind, status): n for kind, status, n in queries.job_counts(db)}
        for kind in sorted({kind for kind, _ in counts}):
            for status in JobStatus:  # every status of a kind seen, zeros included, so rates stay defined
                jobs.add_metric([kind, status], counts.get((kind, status), 0))
        yield jobs

        oldest = queries.oldest_running_heartbeat(db)
        age = GaugeMetricFamily("prefloop_worker_heartbeat_age_seconds",
                                "Age of the oldest heartbeat among running jobs (0 when none runs)")
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield age

        rankings = GaugeMetricFamily("prefloop_rankings_total", "Rankings stored (all projects, all sources)")
        rankings.add_metric([], queries.ranking_count(db))
        yield rankings

        active = GaugeMetricFamily("prefloop_active_annotators",
                                   "Distinct annotators who submitted a ranking in the last 15 minutes")
        active.add_metric([], queries.active_annotators(db, now - ACTIVE_WINDOW))
        yield active

        accuracy = GaugeMetricFamily("prefloop_reward_model_heldout_accuracy",
                                     "Held-out accuracy of each project's newest trained reward model",
                                     labels=["project_id"])
        kl = GaugeMetricFamily("prefloop_policy_kl", "KL to the reference of each project's newest trained policy",
                               labels=["project_id"])
        for project_id, kind, metrics in sorted(queries.latest_trained_versions(db)):
            if kind == VersionKind.REWARD and (value := _float(metrics.get("heldout_accuracy"))) is not None:
                accuracy.add_metric([str(project_id)], value)
            if kind == VersionKind.POLICY and (value := _float(metrics.get("kl"))) is not None:
                kl.add_metric([str(project_id)], value)
        yield accuracy
        yield kl

        durations = GaugeMetricFamily(
            "prefloop_job_duration_seconds",
            f"Run time of the last {DURATION_WINDOW} succeeded jobs, by kind (quantile 1 is the longest)",
            labels=["kind", "quantile"],
        )
        by_kind: dict[str, list[float]] = defaultdict(list)
        for kind, seconds in queries.recent_durations(db, DURATION_WINDOW):
            by_kind[kind].append(seconds)
        for kind in sorted(by_kind):
            for q in QUANTILES:
                durations.add_metric([kind, str(q)], _quantile(by_kind[kind], q))
        yield durations
