"""``GET /metrics``: the service's figures in Prometheus' text format, read from the running streams and models
at each scrape (so they agree with ``GET /api/streams``), through ``prometheus_client``.

Per stream (label ``stream``): ``edgecv_stream_up``, ``edgecv_stream_ready``, ``edgecv_stream_fps``,
``edgecv_stream_frames_total``, ``edgecv_stream_dropped_frames_total``, ``edgecv_stream_reconnects_total``
(the source reopened, by the capture or by the service), ``edgecv_stream_tracks`` (now),
``edgecv_stream_tracks_started_total``, ``edgecv_stream_skipped_frames_total`` (given no result by a model
version that breached), ``edgecv_stream_latency_ms`` (capture to result, histogram),
``edgecv_stage_latency_ms`` and ``edgecv_stage_queue_depth`` (label ``stage``),
``edgecv_line_crossings_total`` (labels ``line``, ``direction``), ``edgecv_zone_objects`` and
``edgecv_zone_entered_total`` (label ``zone``). Per model (label ``model``): ``edgecv_model_inference_ms`` (per
call, histogram), ``edgecv_model_batch_size`` (histogram), ``edgecv_model_frames_total``; per stored model
``edgecv_model_swaps_total`` (label ``outcome``: swapped, refused, rolled_back). With MQTT:
``edgecv_mqtt_connected``, ``edgecv_mqtt_queue_depth``, ``edgecv_mqtt_events_sent_total``,
``edgecv_mqtt_events_dropped_total``.

Example:
    >>> body, content_type = render_metrics(service)                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Iterator

from edgecv.service.stream import ServedStream


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus' ``le`` buckets from a histogram's bounds and cumulative counts (``+Inf`` last)."""
    return list(zip([f"{b:g}" for b in bounds] + ["+Inf"], counts))


class ServiceCollector:
    """A ``prometheus_client`` collector over a :class:`~edgecv.service.service.Service`."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        s = self.service
        g = {name: GaugeMetricFamily(f"edgecv_{name}", doc, labels=labels) for name, doc, labels in (
            ("stream_up", "1 while the stream runs", ["stream"]),
            ("stream_ready", "1 while the stream produced a result within its window", ["stream"]),
            ("stream_fps", "results per second over the last 5 s", ["stream"]),
            ("stream_tracks", "tracks in the newest frame", ["stream"]),
            ("stage_queue_depth", "mean frames waiting in front of the stage", ["stream", "stage"]),
            ("zone_objects", "objects inside the zone now", ["stream", "zone"]),
        )}
        c = {name: CounterMetricFamily(f"edgecv_{name}", doc, labels=labels) for name, doc, labels in (
            ("stream_frames", "frames processed", ["stream"]),
            ("stream_dropped_frames", "frames dropped by the newest-frame policy", ["stream"]),
            ("stream_reconnects", "times the source was opened again", ["stream"]),
            ("stream_tracks_started", "tracks started", ["stream"]),
            ("line_crossings", "tracks that crossed the line", ["stream", "line", "direction"]),
            ("zone_entered", "tracks that entered the zone", ["stream", "zone"]),
            ("model_frames", "frames run through the model", ["model"]),
            ("stream_skipped_frames", "frames given no result (a model version that breached)", ["stream"]),
            ("model_swaps", "versions of a stored model swapped in, refused or rolled back, by outcome",
             ["model", "outcome"]),
        )}
        latency = HistogramMetricFamily("edgecv_stream_latency_ms", "capture to result, ms", labels=["stream"])
        stages = HistogramMetricFamily("edgecv_stage_latency_ms", "time a stage took per frame, ms",
                                       labels=["stream", "stage"])
        streams: list[ServedStream]
        streams, models = s.parts()
        for st in streams:
            d = st.status()
            sid = st.id
            g["stream_up"].add_metric([sid], 1.0 if d["state"] == "running" else 0.0)
            g["stream_ready"].add_metric([sid], 1.0 if d["ready"] else 0.0)
            g["stream_fps"].add_metric([sid], float(d["fps"] or 0.0))
            g["stream_tracks"].add_metric([sid], float(d["tracks_now"]))
            c["stream_frames"].add_metric([sid], float(d["frames"]))
            c["stream_dropped_frames"].add_metric([sid], float(d["dropped"]))
            c["stream_reconnects"].add_metric([sid], float(d["reconnects"] + d["restarts"]))
            c["stream_tracks_started"].add_metric([sid], float(d["tracks_total"]))
            c["stream_skipped_frames"].add_metric([sid], float(d["skipped"]))
            for name, counts in (d["counts"] or {}).items():
                if "in" in counts:
                    c["line_crossings"].add_metric([sid, name, "in"], float(counts["in"]))
                    c["line_crossings"].add_metric([sid, name, "out"], float(counts["out"]))
                else:
                    g["zone_objects"].add_metric([sid, name], float(counts["inside"]))
                    c["zone_entered"].add_metric([sid, name], float(counts["entered"]))
            for stage, fig in (d["stages"] or {}).items():
                if fig.get("queue_mean") is not None:
                    g["stage_queue_depth"].add_metric([sid, stage], float(fig["queue_mean"]))
            pipeline = st.pipeline
            if pipeline is not None:
                h = pipeline.latencies.histogram
                latency.add_metric([sid], _buckets(h.bounds, h.cumulative()), h.sum)
                for stage, stat in pipeline.stage_stats().items():
                    h = stat.histogram
                    stages.add_metric([sid, stage], _buckets(h.bounds, h.cumulative()), h.sum)
        infer = HistogramMetricFamily("edgecv_model_inference_ms", "one call of the shared model, ms", labels=["model"])
        sizes = HistogramMetricFamily("edgecv_model_batch_size", "frames per call of the shared model", labels=["model"])
        for m in models:
            f = m.batcher.figures()
            for family, (bounds, counts, total) in ((infer, f["latency"]), (sizes, f["sizes"])):
                family.add_metric([m.name], _buckets(bounds, counts), total)
            c["model_frames"].add_metric([m.name], float(f["frames"]))
        for (name, outcome), count in sorted(s.swaps.items()):
            c["model_swaps"].add_metric([name, outcome], float(count))
        pub = s.publisher
        if pub is not None:
            up = GaugeMetricFamily("edgecv_mqtt_connected", "1 while the MQTT broker is connected")
            up.add_metric([], 1.0 if pub.connected else 0.0)
            depth = GaugeMetricFamily("edgecv_mqtt_queue_depth", "events waiting on disk for the broker")
            depth.add_metric([], float(len(pub.queue)))
            sent = CounterMetricFamily("edgecv_mqtt_events_sent", "events the broker acknowledged")
            sent.add_metric([], float(pub.sent))
            lost = CounterMetricFamily("edgecv_mqtt_events_dropped", "events dropped: the queue was full")
            lost.add_metric([], float(pub.dropped))
            yield from (up, depth, sent, lost)
        yield from g.values()
        yield from c.values()
        yield latency
        yield stages
        yield infer
        yield sizes


def render_metrics(service: Any) -> tuple[bytes, str]:
    """The exposition text of ``service``'s figures and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST
