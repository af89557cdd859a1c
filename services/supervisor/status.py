"""``voxrelay status``: the state of a running stack, read from outside it.

Signaling's ``/healthz`` names every live service instance and where its metrics are
served; each of those (and signaling's own ``/metrics``) is scraped at once. Histograms
of one service kind are merged by summing bucket counts, and quantiles are estimated
the way PromQL's ``histogram_quantile`` does. The counts are cumulative since each
process started, not a rate window: a long-running stack shows its whole history.

The parsing, merging, quantile and rendering functions are pure; only :func:`collect`
does I/O. A scrape that fails marks its instance and the report goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from services.runtime import ConfigError, env_int

from .config import DEFAULT_HTTP_PORT

DEFAULT_TIMEOUT_S = 3.0
EXIT_OK, EXIT_DEGRADED, EXIT_UNREACHABLE = 0, 1, 2
ALIVE, UNREACHABLE, MISSING = "alive", "unreachable metrics", "missing"
LOOP_LAG = "voxrelay_event_loop_lag_seconds"
RSS = "process_resident_memory_bytes"

LATENCIES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("voxrelay_bus_hop_seconds", "stage", (
        ("edge_to_mixer", "mixer"), ("mixer_to_link", "openai_link"),
        ("link_to_mixer", "mixer"), ("link_to_edge", "media_edge"))),
    ("voxrelay_frame_age_seconds", "at", (("model", "openai_link"), ("client", "media_edge"))),
    ("voxrelay_voice_to_voice_seconds", "", (("", "media_edge"),)),
    ("voxrelay_realtime_time_to_first_audio_seconds", "", (("", "openai_link"),)),
    ("voxrelay_edge_round_trip_seconds", "", (("", "media_edge"),)),
    ("voxrelay_edge_ice_connect_seconds", "", (("", "media_edge"),)),
    ("voxrelay_mixer_tick_lateness_seconds", "", (("", "mixer"),)),
    ("voxrelay_link_realtime_connect_seconds", "", (("", "openai_link"),)),
)
"The latency table: histogram, the label that says where, and the rows always shown."

Labels = tuple[tuple[str, str], ...]
"Sorted (name, value) pairs, without ``le``."


class StatusError(Exception):
    """Signaling could not be asked at all; the message is the one line to show."""


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]
    "(upper bound, cumulative count), sorted by bound; the last bound is +Inf."

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


@dataclass(frozen=True)
class Metrics:
    """One scrape (or several merged): histograms and plain sample values."""

    histograms: Mapping[tuple[str, Labels], Histogram] = field(default_factory=dict)
    values: Mapping[tuple[str, Labels], float] = field(default_factory=dict)
    "Counter and gauge samples by sample name (counters keep their ``_total``)."

    def value(self, name: str) -> float | None:
        found = [v for (n, _), v in self.values.items() if n == name]
        return sum(found) if found else None


@dataclass(frozen=True)
class Target:
    """One service instance as /healthz (or the signaling URL) names it."""

    service: str
    instance: str
    metrics_url: str
    pid: int | None = None
    load: float | None = None
    live: bool = True
    "False: /healthz lists no live instance of this service kind."


@dataclass(frozen=True)
class Scrape:
    metrics: Metrics | None
    error: str = ""


# --- parsing, merging, quantiles -----------------------------------------------------------


def parse_metrics(text: str) -> Metrics:
    """Prometheus text exposition → :class:`Metrics` (``ValueError`` if it is not that)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[tuple[str, Labels], dict[float, float]] = defaultdict(dict)
    values: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if family.type == "histogram":
                if sample.name == f"{family.name}_bucket":
                    buckets[family.name, labels][float(sample.labels["le"])] = sample.value
            elif not sample.name.endswith("_created"):
                values[sample.name, labels] = sample.value
    histograms = {key: Histogram(tuple(sorted(b.items()))) for key, b in buckets.items()}
    return Metrics(histograms, values)


def merge_metrics(scrapes: Iterable[Metrics]) -> Metrics:
    """Sum bucket counts and sample values of the same name and labels across instances."""
    buckets: dict[tuple[str, Labels], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    values: dict[tuple[str, Labels], float] = defaultdict(float)
    for metrics in scrapes:
        for key, histogram in metrics.histograms.items():
            for bound, count in histogram.buckets:
                buckets[key][bound] += count
        for key, value in metrics.values.items():
            values[key] += value
    histograms = {key: Histogram(tuple(sorted(b.items()))) for key, b in buckets.items()}
    return Metrics(histograms, dict(values))


def histogram_quantile(q: float, histogram: Histogram | None) -> float | None:
    """The ``q`` quantile as PromQL's ``histogram_quantile`` estimates it; None: no data.

    Linear interpolation inside the bucket holding the rank (the first bucket starts
    at 0); a rank in the +Inf bucket gives the highest finite bound.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"'q' must be within [0, 1] (got {q})")
    if histogram is None or len(histogram.buckets) < 2 or histogram.buckets[-1][0] != math.inf:
        return None
    bounds = [b for b, _ in histogram.buckets]
    counts, highest = [], 0.0
    for _, c in histogram.buckets:  # PromQL forces cumulative counts to be monotonic
        highest = max(highest, c)
        counts.append(highest)
    if counts[-1] == 0:
        return None
    rank = q * counts[-1]
    b = next(i for i, c in enumerate(counts[:-1] + [math.inf]) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = (0.0, counts[0]) if b == 0 else (bounds[b - 1], counts[b] - counts[b - 1])
    if b > 0:
        rank -= counts[b - 1]
    return start if count == 0 else start + (bounds[b] - start) * (rank / count)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRow:
    service: str
    instance: str
    pid: int | None
    state: str
    load: float | None
    rss_mb: float | None
    loop_lag_p95_ms: float | None
    metrics: str
    error: str = ""


@dataclass(frozen=True)
class LatencyRow:
    what: str
    metric: str
    where: str
    service: str
    count: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class Report:
    url: str
    health: str
    "What /healthz said: ok or degraded."
    services: tuple[ServiceRow, ...]
    latencies: tuple[LatencyRow, ...]
    counters: dict[str, Any]

    @property
    def exit_code(self) -> int:
        healthy = self.health == "ok" and all(r.state == ALIVE for r in self.services)
        return EXIT_OK if healthy else EXIT_DEGRADED

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "status": self.health, "cumulative_since_process_start": True,
                "exit": self.exit_code, "services": [asdict(r) for r in self.services],
                "latencies": [asdict(r) for r in self.latencies], "counters": self.counters}


def targets_from_health(url: str, body: Mapping[str, object]) -> list[Target]:
    """Signaling and every live instance /healthz lists (a placeholder for a kind with none)."""
    services = body.get("services")
    if body.get("status") not in ("ok", "degraded") or not isinstance(services, dict):
        raise ValueError("not a voxrelay /healthz answer")
    targets = [Target("signaling", "signaling", f"{url}/metrics")]
    for service, instances in services.items():
        if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
            raise ValueError(f"/healthz lists {service!r} as {instances!r}")
        if not instances:
            targets.append(Target(service, "-", "", live=False))
        for i in instances:
            targets.append(Target(service, str(i.get("instance", "?")), str(i.get("metrics") or ""),
                                  i.get("pid"), i.get("load")))
    return targets


def build_report(url: str, health: str, targets: Sequence[Target],
                 scrapes: Sequence[Scrape]) -> Report:
    """Everything :func:`render_text` and ``--json`` show, from the answers gathered."""
    rows = [_service_row(t, s) for t, s in zip(targets, scrapes, strict=True)]
    by_kind: dict[str, list[Metrics]] = defaultdict(list)
    for target, scrape in zip(targets, scrapes, strict=True):
        if scrape.metrics is not None:
            by_kind[target.service].append(scrape.metrics)
    kinds = {kind: merge_metrics(m) for kind, m in by_kind.items()}
    return Report(url, health, tuple(rows), tuple(latency_rows(kinds)), counters(kinds))


def _service_row(target: Target, scrape: Scrape) -> ServiceRow:
    instance, metrics = target.instance, scrape.metrics
    if not target.live:
        return ServiceRow(target.service, instance, None, MISSING, None, None, None, "")
    if metrics is None:
        return ServiceRow(target.service, instance, target.pid, UNREACHABLE, target.load,
                          None, None, target.metrics_url, scrape.error)
    if target.service == "signaling":  # not in /healthz: it names itself in its metrics
        instance = next((dict(labels).get("instance", instance)
                         for name, labels in metrics.values if name == "voxrelay_service_info"),
                        instance)
    rss = metrics.value(RSS)
    lag = histogram_quantile(0.95, metrics.histograms.get((LOOP_LAG, ())))
    return ServiceRow(target.service, instance, target.pid, ALIVE, target.load,
                      None if rss is None else round(rss / 1e6, 1), _ms(lag), target.metrics_url)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def latency_rows(kinds: Mapping[str, Metrics]) -> list[LatencyRow]:
    """One row per latency histogram, label value and service kind; expected rows always."""
    rows = []
    for metric, label, expected in LATENCIES:
        found: dict[tuple[str, str], Histogram | None] = dict.fromkeys(expected)
        for kind, metrics in sorted(kinds.items()):
            for (name, labels), histogram in metrics.histograms.items():
                if name == metric:
                    where = dict(labels).get(label, "") if label else ",".join(v for _, v in labels)
                    found[where, kind] = histogram
        what = metric.removeprefix("voxrelay_").removesuffix("_seconds")
        for (where, kind), histogram in found.items():
            rows.append(LatencyRow(what, metric, where, kind,
                                   int(histogram.count) if histogram else 0,
                                   _ms(histogram_quantile(0.5, histogram)),
                                   _ms(histogram_quantile(0.95, histogram))))
    return rows


def counters(kinds: Mapping[str, Metrics]) -> dict[str, Any]:
    """Sessions, clients, and the drop, loss, error and fallback counts that are present."""
    result: dict[str, Any] = {}
    everything = merge_metrics(kinds.values())
    for name in ("sessions", "clients"):
        value = everything.value(f"voxrelay_{name}")
        if value is not None:
            result[name] = int(value)
    dropped: dict[tuple[str, str], float] = defaultdict(float)
    for kind, metrics in sorted(kinds.items()):
        for (name, labels), value in metrics.values.items():
            if name.endswith("_frames_dropped_total"):
                dropped[kind, dict(labels).get("reason", "")] += value
    if dropped:
        result["frames_dropped"] = [{"service": s, "reason": r, "count": int(v)}
                                    for (s, r), v in sorted(dropped.items())]
    for key, metric, label in (("frames_lost", "voxrelay_bus_frames_lost_total", "stage"),
                               ("realtime_errors", "voxrelay_link_realtime_errors_total", "code"),
                               ("fallbacks", "voxrelay_fallbacks_total", "kind")):
        sums: dict[str, float] = defaultdict(float)
        for (name, labels), value in everything.values.items():
            if name == metric:
                sums[dict(labels).get(label, "")] += value
        if sums:
            result[key] = [{label: k, "count": int(v)} for k, v in sorted(sums.items())]
    return result


# --- rendering -------------------------------------------------------------------------------


def _fmt(value: float | str | None, digits: int = 1) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in (headers, *rows)]


def render_text(report: Report) -> str:
    lines = [f"voxrelay at {report.url}: {report.health}",
             "(latencies are cumulative since each process started, not a recent window)", ""]
    lines += _table(("service", "instance", "pid", "state", "load", "RSS MB", "loop lag p95 ms"),
                    [(r.service, r.instance, _fmt(r.pid), r.state, _fmt(r.load),
                      _fmt(r.rss_mb, 0), _fmt(r.loop_lag_p95_ms)) for r in report.services])
    for r in report.services:
        if r.error:
            lines.append(f"  {r.instance}: {r.error}")
    lines.append("")
    lines += _table(("what", "where", "count", "p50 ms", "p95 ms"),
                    [(r.what, f"{r.where} @ {r.service}" if r.where else r.service,
                      _fmt(r.count or None), _fmt(r.p50_ms), _fmt(r.p95_ms))
                     for r in report.latencies])
    c = report.counters
    if c:
        lines.append("")
    if "sessions" in c or "clients" in c:
        lines.append(f"sessions {_fmt(c.get('sessions'))}, clients {_fmt(c.get('clients'))}")
    for key, title, parts in (("frames_dropped", "frames dropped", ("service", "reason")),
                              ("frames_lost", "bus frames lost", ("stage",)),
                              ("realtime_errors", "Realtime errors", ("code",)),
                              ("fallbacks", "fallbacks", ("kind",))):
        if key in c:  # only the non-zero ones; --json has them all
            shown = [f"{'/'.join(e[p] or '-' for p in parts)} {e['count']}"
                     for e in c[key] if e["count"]]
            lines.append(f"{title}: {', '.join(shown) or 0}")
    return "\n".join(lines) + "\n"


# --- I/O -------------------------------------------------------------------------------------


def ssl_for(url: str) -> bool:
    """False (no certificate check) only for https on a loopback host: a local self-signed cert."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return True
    host = parts.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


async def collect(url: str, timeout_s: float) -> Report:
    """Ask /healthz, then scrape every instance at once (``StatusError``: no signaling)."""
    return build_report(url, *await _gather(url, timeout_s))


async def scrape_by_kind(url: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                         extra: Mapping[str, str] | None = None) -> dict[str, Metrics]:
    """Every live instance's metrics merged per service kind, plus ``extra`` (kind → a
    metrics URL /healthz does not list, such as the bus's); ``StatusError`` if any fails."""
    _, targets, scrapes = await _gather(url, timeout_s, extra)
    by_kind: dict[str, list[Metrics]] = defaultdict(list)
    for target, scrape in zip(targets, scrapes, strict=True):
        if scrape.metrics is None:
            raise StatusError(f"{target.instance}: {scrape.error or 'no live instance'}")
        by_kind[target.service].append(scrape.metrics)
    return {kind: merge_metrics(metrics) for kind, metrics in by_kind.items()}


async def _gather(url: str, timeout_s: float, extra: Mapping[str, str] | None = None,
                  ) -> tuple[str, list[Target], list[Scrape]]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        try:
            async with http.get(f"{url}/healthz", ssl=ssl_for(url)) as resp:
                if resp.status not in (200, 503):
                    raise StatusError(f"{url}/healthz answered HTTP {resp.status}, "
                                      "not voxrelay signaling")
                targets = targets_from_health(url, await resp.json(content_type=None))
                health = "ok" if resp.status == 200 else "degraded"
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            reason = str(e) or f"no answer within {timeout_s:g} s"
            raise StatusError(f"cannot reach voxrelay signaling at {url}: {reason}") from e

        async def scrape(target: Target) -> Scrape:
            if not target.live:
                return Scrape(None)
            if not target.metrics_url:
                return Scrape(None, "serves no metrics")
            try:
                async with http.get(target.metrics_url, ssl=ssl_for(target.metrics_url)) as resp:
                    if resp.status != 200:
                        return Scrape(None, f"{target.metrics_url}: HTTP {resp.status}")
                    return Scrape(parse_metrics(await resp.text()))
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                reason = str(e) or f"no answer within {timeout_s:g} s"
                return Scrape(None, f"{target.metrics_url}: {reason}")

        targets += [Target(kind, kind, metrics_url) for kind, metrics_url in (extra or {}).items()]
        scrapes = await asyncio.gather(*(scrape(t) for t in targets))
    return health, targets, list(scrapes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="signaling URL (default http://127.0.0.1:"
                        "<VOXRELAY_HTTP_PORT or 8080>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per request (default {DEFAULT_TIMEOUT_S:g})")


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 0 healthy, 1 degraded or partly unreachable, 2 no signaling."""
    try:
        url = (args.url or "http://127.0.0.1:"
               f"{env_int('VOXRELAY_HTTP_PORT', DEFAULT_HTTP_PORT, minimum=1, maximum=65535)}")
    except ConfigError as e:
        sys.stderr.write(f"voxrelay status: {e}\n")
        return EXIT_UNREACHABLE
    url = url.rstrip("/")
    if args.timeout <= 0:
        sys.stderr.write(f"voxrelay status: '--timeout' must be > 0 (got {args.timeout:g})\n")
        return EXIT_UNREACHABLE
    try:
        report = asyncio.run(collect(url, args.timeout))
    except StatusError as e:
        sys.stderr.write(f"voxrelay status: {e}\n")
        return EXIT_UNREACHABLE
    sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n" if args.json
                     else render_text(report))
    return report.exit_code
