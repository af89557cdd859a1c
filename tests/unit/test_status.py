"""``voxrelay status`` without a stack: real prometheus_client exposition in, report out."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from services.supervisor.status import (
    ALIVE,
    EXIT_DEGRADED,
    EXIT_OK,
    MISSING,
    UNREACHABLE,
    Scrape,
    Target,
    build_report,
    histogram_quantile,
    merge_metrics,
    parse_metrics,
    render_text,
    ssl_for,
    targets_from_health,
)
from services.supervisor.status import Histogram as Buckets

HOP = "voxrelay_bus_hop_seconds"
HOP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
FINE_BUCKETS = tuple(round(0.001 * i, 3) for i in range(1, 201))
"1 ms buckets up to 200 ms: fine enough to check interpolation against true quantiles."


def exposition(values, buckets=FINE_BUCKETS, name="voxrelay_voice_to_voice_seconds") -> str:
    registry = CollectorRegistry()
    histogram = Histogram(name, "test", registry=registry, buckets=buckets)
    for v in values:
        histogram.observe(v)
    return generate_latest(registry).decode()


def only(metrics, name="voxrelay_voice_to_voice_seconds"):
    return metrics.histograms[name, ()]


def test_quantiles_match_the_observed_values_within_a_bucket():
    values = np.random.default_rng(7).uniform(0.020, 0.180, 5000)
    histogram = only(parse_metrics(exposition(values)))
    assert histogram.count == 5000
    for q in (0.5, 0.95):
        assert histogram_quantile(q, histogram) == pytest.approx(np.quantile(values, q), abs=0.001)


def test_a_quantile_interpolates_linearly_inside_its_bucket():
    # 10 observations in (0.001, 0.002]; the median sits halfway through that bucket.
    histogram = only(parse_metrics(exposition([0.0015] * 10, buckets=(0.001, 0.002, 0.004))))
    assert histogram_quantile(0.5, histogram) == pytest.approx(0.0015)
    assert histogram_quantile(1.0, histogram) == pytest.approx(0.002)


def test_the_first_bucket_starts_at_zero():
    histogram = only(parse_metrics(exposition([0.0005] * 4, buckets=(0.001, 0.002))))
    assert histogram_quantile(0.5, histogram) == pytest.approx(0.0005)


def test_a_rank_in_the_inf_bucket_gives_the_highest_finite_bound():
    histogram = only(parse_metrics(exposition([0.5, 7.0, 9.0], buckets=(0.1, 1.0))))
    assert histogram_quantile(0.95, histogram) == 1.0


def test_a_histogram_without_observations_has_no_quantile():
    histogram = only(parse_metrics(exposition([])))
    assert histogram.count == 0
    assert histogram_quantile(0.5, histogram) is None
    assert histogram_quantile(0.95, None) is None
    assert histogram_quantile(0.5, Buckets(((0.1, 3.0),))) is None  # no +Inf bucket


def test_a_quantile_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="'q' must be within"):
        histogram_quantile(1.5, Buckets(((0.1, 1.0), (float("inf"), 1.0))))


def test_merging_two_instances_sums_their_bucket_counts_per_label():
    def edge(fast: int, slow: int) -> str:
        registry = CollectorRegistry()
        hop = Histogram(HOP, "test", ["stage"], registry=registry, buckets=HOP_BUCKETS)
        for _ in range(fast):
            hop.labels("link_to_edge").observe(0.0003)
        for _ in range(slow):
            hop.labels("link_to_edge").observe(0.03)
        hop.labels("edge_to_mixer").observe(0.0001)
        return generate_latest(registry).decode()

    one, two = parse_metrics(edge(90, 0)), parse_metrics(edge(0, 10))
    merged = merge_metrics([one, two])
    key = (HOP, (("stage", "link_to_edge"),))
    assert merged.histograms[key].count == 100
    assert dict(merged.histograms[key].buckets)[0.0005] == 90
    assert merged.histograms[HOP, (("stage", "edge_to_mixer"),)].count == 2
    assert histogram_quantile(0.5, merged.histograms[key]) < 0.0005 < \
        histogram_quantile(0.95, merged.histograms[key])


def test_counters_keep_total_and_created_samples_are_dropped():
    registry = CollectorRegistry()
    Counter("voxrelay_edge_frames_dropped_total", "t", ["reason"], registry=registry) \
        .labels("hwm").inc(3)
    Gauge("voxrelay_clients", "t", registry=registry).set(2)
    metrics = parse_metrics(generate_latest(registry).decode())
    assert metrics.value("voxrelay_edge_frames_dropped_total") == 3
    assert metrics.value("voxrelay_clients") == 2
    assert not any(name.endswith("_created") for name, _ in metrics.values)


def test_text_that_is_not_an_exposition_is_refused():
    with pytest.raises(ValueError):
        parse_metrics("<html>not found</html>\n")


# --- the report ------------------------------------------------------------------------------


def service_metrics(service: str, instance: str, *, rss: float, lag: list[float],
                    extra=None) -> Scrape:
    registry = CollectorRegistry()
    Gauge("voxrelay_service_info", "t", ["service", "instance"], registry=registry) \
        .labels(service, instance).set(1)
    Gauge("process_resident_memory_bytes", "t", registry=registry).set(rss)
    loop = Histogram("voxrelay_event_loop_lag_seconds", "t", registry=registry,
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0))
    for v in lag:
        loop.observe(v)
    if extra:
        extra(registry)
    return Scrape(parse_metrics(generate_latest(registry).decode()))


HEALTH = {"status": "degraded", "services": {
    "media_edge": [
        {"instance": "media_edge-1", "pid": 11, "load": 1, "loop_lag_ms": 0.4,
         "metrics": "http://127.0.0.1:9474/metrics"},
        {"instance": "media_edge-2", "pid": 12, "load": 0, "loop_lag_ms": 0.2,
         "metrics": "http://127.0.0.1:9475/metrics"}],
    "mixer": [{"instance": "mixer-1", "pid": 13, "load": 1, "loop_lag_ms": 0.1,
               "metrics": "http://127.0.0.1:9472/metrics"}],
    "openai_link": [],
    "recorder": []}}


def edge_latencies(registry: CollectorRegistry) -> None:
    v2v = Histogram("voxrelay_voice_to_voice_seconds", "t", registry=registry,
                    buckets=(0.1, 0.2, 0.3, 0.5, 1.0))
    for v in (0.15, 0.25, 0.25, 0.4):
        v2v.observe(v)
    Counter("voxrelay_edge_frames_dropped_total", "t", ["reason"], registry=registry) \
        .labels("stale").inc(5)


@pytest.fixture
def report():
    targets = targets_from_health("http://127.0.0.1:8080", HEALTH)
    assert [(t.instance, t.live) for t in targets] == [
        ("signaling", True), ("media_edge-1", True), ("media_edge-2", True), ("mixer-1", True),
        ("-", False), ("-", False)]
    scrapes = [
        service_metrics("signaling", "signaling-1", rss=80e6, lag=[0.0005] * 9 + [0.03]),
        service_metrics("media_edge", "media_edge-1", rss=120e6, lag=[0.002] * 20,
                        extra=edge_latencies),
        service_metrics("media_edge", "media_edge-2", rss=110e6, lag=[], extra=edge_latencies),
        Scrape(None, "http://127.0.0.1:9472/metrics: Cannot connect"),
        Scrape(None),
        Scrape(None),
    ]
    return build_report("http://127.0.0.1:8080", "degraded", targets, scrapes)


def test_the_services_table_has_every_instance_and_the_missing_kinds(report):
    rows = {r.instance: r for r in report.services}
    assert rows["signaling-1"].state == ALIVE and rows["signaling-1"].rss_mb == 80
    assert rows["media_edge-1"].pid == 11 and rows["media_edge-1"].load == 1
    assert rows["media_edge-1"].loop_lag_p95_ms == pytest.approx(1.0 + 1.5 * 0.95)  # in (1, 2.5]
    assert rows["media_edge-2"].loop_lag_p95_ms is None  # no samples yet
    assert rows["mixer-1"].state == UNREACHABLE and "Cannot connect" in rows["mixer-1"].error
    assert [(r.service, r.state) for r in report.services if r.instance == "-"] == \
        [("openai_link", MISSING), ("recorder", MISSING)]


def test_latencies_merge_both_edges_and_empty_rows_show_a_dash(report):
    v2v = next(r for r in report.latencies if r.what == "voice_to_voice")
    assert (v2v.service, v2v.count) == ("media_edge", 8)
    # merged cumulative counts 0.2: 2, 0.3: 6, 0.5: 8 → rank 4 is halfway into (0.2, 0.3]
    assert v2v.p50_ms == pytest.approx(250.0)
    text = render_text(report)
    assert "cumulative since each process started" in text
    lines = text.splitlines()
    hop = next(line for line in lines if line.startswith("bus_hop") and "edge_to_mixer" in line)
    assert hop.split()[-3:] == ["-", "-", "-"]
    v2v_line = next(line for line in lines if line.startswith("voice_to_voice"))
    assert v2v_line.split()[-3:] == ["8", "250.0", "460.0"]
    assert "frames dropped: media_edge/stale 10" in text
    assert "mixer-1: http://127.0.0.1:9472/metrics: Cannot connect" in text
    for kind in ("signaling", "media_edge", "mixer", "openai_link", "recorder"):
        assert any(line.split()[:1] == [kind] for line in lines)


def test_json_carries_the_same_rows(report):
    data = report.to_json()
    assert data["status"] == "degraded" and data["exit"] == EXIT_DEGRADED
    assert len(data["services"]) == 6 and len(data["latencies"]) == len(report.latencies)
    assert data["counters"]["frames_dropped"] == [
        {"service": "media_edge", "reason": "stale", "count": 10}]


def test_exit_is_zero_only_when_healthy_and_every_scrape_worked():
    health = {"status": "ok", "services": {"mixer": [
        {"instance": "mixer-1", "pid": 1, "load": 0, "metrics": "http://127.0.0.1:1/metrics"}]}}
    targets = targets_from_health("http://x", health)
    good = service_metrics("mixer", "mixer-1", rss=1e6, lag=[0.001])
    assert build_report("http://x", "ok", targets, [good, good]).exit_code == EXIT_OK
    failed = Scrape(None, "timed out")
    assert build_report("http://x", "ok", targets, [good, failed]).exit_code == EXIT_DEGRADED
    assert build_report("http://x", "degraded", targets, [good, good]).exit_code == EXIT_DEGRADED
    gone = targets_from_health("http://x", {"status": "degraded", "services": {"mixer": []}})
    assert build_report("http://x", "degraded", gone, [good, Scrape(None)]).exit_code == \
        EXIT_DEGRADED


def test_a_service_without_a_metrics_url_is_reported_not_scraped():
    targets = targets_from_health("http://x", {"status": "ok", "services": {"recorder": [
        {"instance": "recorder-1", "pid": 2, "load": 0, "metrics": ""}]}})
    assert targets[1] == Target("recorder", "recorder-1", "", 2, 0)


@pytest.mark.parametrize("body", [{"status": "ok"}, {"services": {}}, {"status": "ok",
                                  "services": {"mixer": "mixer-1"}}])
def test_an_answer_that_is_not_healthz_is_refused(body):
    with pytest.raises(ValueError):
        targets_from_health("http://x", body)


@pytest.mark.parametrize(("url", "verify"), [
    ("https://127.0.0.1:8443", False), ("https://localhost:8443", False),
    ("https://[::1]:8443", False), ("https://voxrelay.home:8443", True),
    ("https://192.168.1.20:8443", True), ("http://127.0.0.1:8080", True)])
def test_certificates_are_checked_except_a_local_self_signed_one(url, verify):
    assert ssl_for(url) is verify
