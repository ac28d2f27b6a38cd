"""Counters the operator needs, for GetStats and the Prometheus endpoint.

Label values come from fixed sets (outcomes, error reasons, peer names); never a camera id, a
request id, a score or anything else taken from a probe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from lfr.v1 import common_pb2, match_pb2

RATE_WINDOW_S = 60
LATENCY_SAMPLES = 4096


class MatchMetrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._started = clock()
        self.probes = 0
        self.matches = 0
        self.non_matches = 0
        self.refused_no_deployment = 0
        self.refused_invalid = 0
        self.publish_failures = 0
        self.knn_count = 0
        self._knn_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._per_second: deque[list[int]] = deque()  # [whole second, probes in it]

        r = self.registry
        self._p_probes = Counter("lfr_match_probes", "Probes received", registry=r)
        self._p_outcomes = Counter("lfr_match_outcomes", "Probe decisions", ["outcome"], registry=r)
        self._p_refusals = Counter(
            "lfr_match_refusals", "Probes refused, by reason", ["reason"], registry=r
        )
        self._p_failures = Counter(
            "lfr_match_failures",
            "Probes not decided because a dependency failed",
            ["reason"],
            registry=r,
        )
        self._p_publish_failures = Counter(
            "lfr_match_publish_failures", "Matches the alert service did not take", registry=r
        )
        self._p_publish_retries = Counter(
            "lfr_match_publish_retries", "Extra attempts to publish a match", registry=r
        )
        self._p_knn = Histogram(
            "lfr_match_knn_seconds",
            "KNN query latency in Redis",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.privacy_guard = Gauge(
            "lfr_match_privacy_guard_ok",
            "1 while Redis is verified not to retain query arguments",
            registry=r,
        )
        self.peer_up = Gauge(
            "lfr_match_peer_serving", "1 while a peer service reports SERVING", ["peer"], registry=r
        )
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- recording --------------------------------------------------------------------

    def probe(self) -> None:
        self.probes += 1
        self._p_probes.inc()
        second = int(self._clock())
        if self._per_second and self._per_second[-1][0] == second:
            self._per_second[-1][1] += 1
        else:
            self._per_second.append([second, 1])
        self._trim(second)

    def matched(self) -> None:
        self.matches += 1
        self._p_outcomes.labels("matched").inc()

    def no_match(self) -> None:
        self.non_matches += 1
        self._p_outcomes.labels("no_match").inc()

    def refused(self, reason: str, *, invalid: bool = False) -> None:
        """The probe was not decided: bad request, no deployment, unusable deployment."""
        if invalid:
            self.refused_invalid += 1
        elif reason == "NO_DEPLOYMENT":
            self.refused_no_deployment += 1
        self._p_outcomes.labels("refused").inc()
        self._p_refusals.labels(reason).inc()

    def failed(self, reason: str) -> None:
        """A dependency (Redis, watchlist, alert) failed; the caller may retry."""
        self._p_outcomes.labels("failed").inc()
        self._p_failures.labels(reason).inc()

    def publish_failed(self) -> None:
        self.publish_failures += 1
        self._p_publish_failures.inc()

    def publish_retried(self) -> None:
        self._p_publish_retries.inc()

    def knn(self, seconds: float) -> None:
        self.knn_count += 1
        self._knn_ms.append(seconds * 1000.0)
        self._p_knn.observe(seconds)

    # -- reading ----------------------------------------------------------------------

    def _trim(self, second: int) -> None:
        while self._per_second and self._per_second[0][0] <= second - RATE_WINDOW_S:
            self._per_second.popleft()

    def probes_per_second(self) -> float:
        now = self._clock()
        self._trim(int(now))
        window = min(float(RATE_WINDOW_S), max(now - self._started, 1.0))
        return sum(count for _, count in self._per_second) / window

    def knn_summary(self) -> common_pb2.LatencySummary:
        """``count`` is every query since start; percentiles cover the latest
        ``LATENCY_SAMPLES`` queries."""
        if not self._knn_ms:
            return common_pb2.LatencySummary(count=self.knn_count)
        samples = np.fromiter(self._knn_ms, dtype=np.float64)
        p50, p95, p99 = np.percentile(samples, [50, 95, 99])
        return common_pb2.LatencySummary(
            count=self.knn_count,
            p50_ms=float(p50),
            p95_ms=float(p95),
            p99_ms=float(p99),
            max_ms=float(samples.max()),
        )

    def snapshot(self) -> match_pb2.MatchStats:
        return match_pb2.MatchStats(
            probes=self.probes,
            matches=self.matches,
            non_matches=self.non_matches,
            refused_no_deployment=self.refused_no_deployment,
            refused_invalid=self.refused_invalid,
            publish_failures=self.publish_failures,
            knn_latency=self.knn_summary(),
            probes_per_second=self.probes_per_second(),
        )

    # -- endpoint ---------------------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the Prometheus text endpoint in a daemon thread; returns the bound port."""
        self._http, self._http_thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def stop_serving(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
