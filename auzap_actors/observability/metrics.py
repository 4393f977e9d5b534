"""Prometheus metrics of one running service (`GET /metrics`).

Each service owns its `Metrics`, and with it its own `CollectorRegistry` (never the
prometheus_client default registry, which is process-global: tests run several services in one
process).  Two kinds of values:

- events, counted where they happen (webhooks, Evolution calls, health checks, reconnects,
  restarts, applied inbox rows, auto-replies), through the methods below;
- states, read at scrape time (`ScrapeSample`, built by the operators' views from the
  supervisor, the hub, the breaker and one bounded database query), so they are never stale.

Label values are bounded: event names outside Evolution's known set become `other`, Evolution
endpoints are path templates (`/instance/connect/{instance}`), never an instance name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..core.events import EVENT_NAMES
from .journal import EvolutionCall, HealthCheck, Journal
from .per_minute import PerMinute

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Outcomes the auto-reply helper will report; they exist (at 0) from the start.
AUTO_REPLY_OUTCOMES = ("sent", "failed", "skipped")
RECONNECT_OUTCOMES = ("open", "qr", "pending", "unreachable", "refused")
CHECK_PURPOSES = ("periodic", "boot", "reconcile")
CHECK_RESULTS = ("open", "not_open", "missing", "unreachable")
INSTANCE_STATUSES = ("disconnected", "connecting", "waiting_qr", "open", "needs_attention")
ACTOR_STATES = ("starting", "running", "restarting", "waiting_for_database", "crashed", "stopped")
BREAKER_STATES = ("closed", "open", "half_open")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


def event_label(event: str | None) -> str:
    if event is None:
        return "unknown"
    return event if event in EVENT_NAMES else "other"


@dataclass(slots=True)
class ScrapeSample:
    """The states read at scrape time."""

    instances: dict[str, int] = field(default_factory=dict)  # by instance status
    actors: dict[str, int] = field(default_factory=dict)  # by actor state
    mailbox_messages: int = 0  # queued in all mailboxes
    mailbox_max: int = 0  # in the fullest mailbox
    mailbox_peak: int = 0  # the highest any mailbox ever held
    breaker_state: str = "closed"
    breaker_opened: int = 0
    websockets: int = 0
    frames_published: int = 0
    websockets_evicted: int = 0
    websockets_refused: int = 0
    inbox_lag_s: float | None = None  # None: the database did not answer


class _ScrapeCollector(Collector):
    def __init__(self, owner: Metrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        s = self.owner.sample
        instances = GaugeMetricFamily(
            "auzap_instances", "Instances with a live actor, by status.", labels=["status"]
        )
        for status in sorted(set(INSTANCE_STATUSES) | set(s.instances)):
            instances.add_metric([status], s.instances.get(status, 0))
        yield instances
        actors = GaugeMetricFamily(
            "auzap_actors", "Instance actors by supervision state.", labels=["state"]
        )
        for state in sorted(set(ACTOR_STATES) | set(s.actors)):
            actors.add_metric([state], s.actors.get(state, 0))
        yield actors
        yield GaugeMetricFamily(
            "auzap_actors_parked",
            "Actors parked after spending their restart budget.",
            value=s.actors.get("crashed", 0),
        )
        yield GaugeMetricFamily(
            "auzap_mailbox_messages", "Letters queued in all mailboxes.", value=s.mailbox_messages
        )
        yield GaugeMetricFamily(
            "auzap_mailbox_messages_max", "Letters queued in the fullest mailbox.", s.mailbox_max
        )
        yield GaugeMetricFamily(
            "auzap_mailbox_peak_messages",
            "The most letters any mailbox held since its actor's record was created.",
            value=s.mailbox_peak,
        )
        breaker = GaugeMetricFamily(
            "auzap_evolution_breaker_state",
            "1 for the Evolution circuit breaker's current state.",
            labels=["state"],
        )
        for state in BREAKER_STATES:
            breaker.add_metric([state], 1.0 if s.breaker_state == state else 0.0)
        yield breaker
        yield CounterMetricFamily(
            "auzap_evolution_breaker_opened",
            "Times the Evolution circuit breaker opened.",
            value=s.breaker_opened,
        )
        yield GaugeMetricFamily(
            "auzap_websockets_connected", "Browser sockets served now.", value=s.websockets
        )
        yield CounterMetricFamily(
            "auzap_websocket_frames_published",
            "Frames published to browser sockets.",
            value=s.frames_published,
        )
        yield CounterMetricFamily(
            "auzap_websockets_evicted",
            "Sockets closed because their user opened too many.",
            value=s.websockets_evicted,
        )
        yield CounterMetricFamily(
            "auzap_websockets_refused",
            "Socket upgrades refused because the node serves all it may.",
            value=s.websockets_refused,
        )
        yield GaugeMetricFamily(
            "auzap_inbox_lag_seconds",
            "Age of the oldest webhook event stored and not applied yet (0 when none; NaN when"
            " the database did not answer the scrape).",
            value=math.nan if s.inbox_lag_s is None else s.inbox_lag_s,
        )


class Metrics:
    """The service's counters and histograms, and the per-instance journal they feed."""

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        process: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.journal = Journal() if journal is None else journal
        self.sample = ScrapeSample()
        # Wall-clock seconds: the per-minute webhook counts are tagged with real minutes.
        self.clock = clock
        self.webhooks_per_minute = PerMinute()
        r = self.registry
        self.webhooks_received = Counter(
            "auzap_webhooks_received",
            "Webhook deliveries stored or recognised (200), by event.",
            ["event"],
            registry=r,
        )
        self.webhooks_duplicates = Counter(
            "auzap_webhooks_duplicates",
            "Webhook deliveries that were already stored, by event.",
            ["event"],
            registry=r,
        )
        self.webhooks_rejected = Counter(
            "auzap_webhooks_rejected",
            "Webhook deliveries refused, by event (unknown before parsing) and reason.",
            ["event", "reason"],
            registry=r,
        )
        self.inbox_apply_latency = Histogram(
            "auzap_inbox_apply_latency_seconds",
            "From a webhook event's storage to its application by the owning actor.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.inbox_apply_duration = Histogram(
            "auzap_inbox_apply_duration_seconds",
            "Time an actor spends applying one stored webhook event.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inbox_rows = Counter(
            "auzap_inbox_rows_settled",
            "Stored webhook events settled by their actor, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.evolution_requests = Counter(
            "auzap_evolution_requests",
            "Calls to Evolution (retries included), by method, endpoint template and outcome.",
            ["method", "endpoint", "outcome"],
            registry=r,
        )
        self.evolution_duration = Histogram(
            "auzap_evolution_request_duration_seconds",
            "Duration of calls to Evolution (retries included), by method and endpoint.",
            ["method", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.health_checks = Counter(
            "auzap_health_checks",
            "Health checks of instances, by purpose and result.",
            ["purpose", "result"],
            registry=r,
        )
        self.reconnects = Counter(
            "auzap_reconnects",
            "Automatic reconnects, by outcome (open, qr, pending, unreachable, refused).",
            ["outcome"],
            registry=r,
        )
        self.actor_restarts = Counter(
            "auzap_actor_restarts",
            "Actor restarts, by reason (crash, revival after parking, operator).",
            ["reason"],
            registry=r,
        )
        self.actor_parkings = Counter(
            "auzap_actor_parkings",
            "Times an actor was parked after spending its restart budget.",
            registry=r,
        )
        self.auto_replies = Counter(
            "auzap_auto_replies",
            "Automatic replies to incoming messages, by outcome.",
            ["outcome"],
            registry=r,
        )
        for outcome in AUTO_REPLY_OUTCOMES:
            self.auto_replies.labels(outcome)
        # Known label values exist at 0 from the start: a rate() over a series that appears
        # only at its first event misses that event.
        for reason in ("crash", "revival", "operator"):
            self.actor_restarts.labels(reason)
        for outcome in RECONNECT_OUTCOMES:
            self.reconnects.labels(outcome)
        for purpose in CHECK_PURPOSES:
            for result in CHECK_RESULTS:
                self.health_checks.labels(purpose, result)
        r.register(_ScrapeCollector(self))
        if process:
            ProcessCollector(registry=r)

    def __repr__(self) -> str:
        return f"<Metrics {self.journal!r}>"

    # ---- events ----------------------------------------------------------------------------

    def webhook_accepted(self, event: str, *, duplicate: bool) -> None:
        label = event_label(event)
        self.webhooks_received.labels(label).inc()
        at = self.clock()
        self.webhooks_per_minute.add("accepted", at)
        if duplicate:
            self.webhooks_duplicates.labels(label).inc()
            self.webhooks_per_minute.add("duplicates", at)

    def webhook_rejected(self, reason: str, event: str | None = None) -> None:
        self.webhooks_rejected.labels(event_label(event), reason).inc()
        self.webhooks_per_minute.add("rejected", self.clock())

    def webhooks_by_minute(self) -> list[dict[str, Any]]:
        """The last half hour of webhook deliveries per minute (`PerMinute.series`):
        `accepted` counts every 200 (duplicates included), `duplicates` those already stored,
        `rejected` every refusal."""
        return self.webhooks_per_minute.series(self.clock())

    def inbox_row_settled(
        self, outcome: str, *, latency_s: float | None, duration_s: float
    ) -> None:
        self.inbox_rows.labels(outcome).inc()
        self.inbox_apply_duration.observe(duration_s)
        if latency_s is not None:
            self.inbox_apply_latency.observe(max(0.0, latency_s))

    def evolution_call(self, instance: str | None, call: EvolutionCall) -> None:
        """Recorded by the Evolution client once per call."""
        self.evolution_requests.labels(call.method, call.endpoint, call.outcome).inc()
        self.evolution_duration.labels(call.method, call.endpoint).observe(call.duration_s)
        if instance is not None:
            self.journal.evolution_call(instance, call)

    def health_check(self, instance: str, check: HealthCheck) -> None:
        self.health_checks.labels(check.purpose, check.result).inc()
        self.journal.health_check(instance, check)

    def reconnect(self, outcome: str) -> None:
        self.reconnects.labels(outcome).inc()

    def actor_restarted(self, reason: str) -> None:
        self.actor_restarts.labels(reason).inc()

    def actor_parked(self) -> None:
        self.actor_parkings.inc()

    def auto_reply(self, outcome: str) -> None:
        """For the auto-reply responder: one reply sent, failed or skipped."""
        self.auto_replies.labels(outcome).inc()

    # ---- exposition ------------------------------------------------------------------------

    def render(self, sample: ScrapeSample) -> bytes:
        """The Prometheus text exposition, with `sample` as the scrape-time states."""
        self.sample = sample
        return generate_latest(self.registry)
