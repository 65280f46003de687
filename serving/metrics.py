"""Prometheus metrics of the ingress process (the model replicas report batch sizes with results)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter("vfx_http_requests_total", "HTTP requests", ["route", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("vfx_http_request_seconds", "HTTP request latency", ["route"], registry=REGISTRY)
STREAM_FRAMES = Counter("vfx_stream_frames_total", "Live frames by outcome", ["outcome"], registry=REGISTRY)
STREAM_LATENCY = Histogram("vfx_stream_frame_latency_seconds", "Live frame latency, receipt to reply",
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
                           registry=REGISTRY)
STREAM_QUEUE = Gauge("vfx_stream_queue_frames", "Live frames waiting, all streams", registry=REGISTRY)
STREAMS_OPEN = Gauge("vfx_streams_open", "Open live streams", registry=REGISTRY)
BATCH_SIZE = Histogram("vfx_batch_size", "Frames per model batch, per frame served", ["deployment"],
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=REGISTRY)
JOBS = Gauge("vfx_jobs", "Jobs by state", ["state"], registry=REGISTRY)
JOB_FPS = Gauge("vfx_jobs_running_frames_per_second", "Sum of frames/s over running jobs", registry=REGISTRY)
