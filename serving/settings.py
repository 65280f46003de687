"""The service's own settings: the ``args`` of the application in configs/serve.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vfx.errors import VfxError


class UploadLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_bytes: int = Field(2 * 1024**3, ge=1)
    max_seconds: float = Field(3600.0, gt=0)
    max_width: int = Field(4096, ge=16)
    max_height: int = Field(4096, ge=16)
    max_fps: float = Field(120.0, gt=0)
    probe_timeout_s: float = Field(20.0, gt=0, description="probe budget for opening a file and for a short clip")
    probe_seconds_per_clip_second: float = Field(2.0, gt=0, description="extra decode budget per second of the clip")
    max_concealed_fraction: float = Field(0.02, ge=0, le=1, description="damaged video packets an upload may have "
                                                                         "(concealed, reported on the job) before it is refused")
    probe_memory_mb: int = Field(1024, ge=64)
    containers: list[str] = Field(default_factory=lambda: ["avi", "mov", "mp4", "m4a", "3gp", "3g2", "mj2",
                                                           "matroska", "webm", "mxf"])
    video_codecs: list[str] = Field(default_factory=lambda: ["h264", "hevc", "mpeg4", "msmpeg4v2", "msmpeg4",
                                                             "mjpeg", "prores", "dnxhd", "vp9", "av1", "mpeg2video"])
    audio_codecs: list[str] = Field(default_factory=lambda: ["aac", "ac3", "eac3", "mp3", "pcm_s16le",
                                                             "pcm_s24le", "opus", "flac", "alac"])


class JobSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunk_frames: int = Field(48, ge=1, description="frames each chunk writes")
    overlap_frames: int = Field(6, ge=0, description="frames before a chunk processed for temporal state, not written")
    max_attempts: int = Field(3, ge=1, description="tries per chunk before the job fails")
    max_parallel_chunks: int = Field(4, ge=1, description="chunks of one job in flight at once")
    poll_s: float = Field(2.0, gt=0, description="how often the job manager looks for jobs to start or resume")
    chunk_timeout_s: float = Field(1800.0, gt=0, description="a chunk render (or an assembly) taking longer is a failed attempt")
    lease_s: float = Field(30.0, gt=0, description="a running chunk's lease; renewed while it renders, so a restarted "
                                                   "manager waits for it instead of sending it again")
    max_running_jobs: int = Field(4, ge=1, description="jobs rendering at once; the others wait queued")
    max_active_jobs: int = Field(64, ge=1, description="queued + running jobs overall; beyond it submit answers 429")
    max_active_jobs_per_owner: int = Field(8, ge=1, description="queued + running jobs of one API key")
    retry_after_s: int = Field(30, ge=1, description="the Retry-After of a 429")


class StreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(8, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0, le=1, description=(
        "how long a batch waits to fill: 0 takes what is queued (CPU backends run frame by frame, so waiting "
        "only adds latency: benchmarks/RESULTS.md); a GPU replica waits a few ms to fill its forward pass"))
    queue_frames: int = Field(8, ge=1, description="waiting frames per stream; beyond it the oldest are dropped")
    max_inflight: int = Field(4, ge=1, description="frames per stream being processed at once")
    max_frame_bytes: int = Field(8 * 1024**2, ge=1024)
    idle_timeout_s: float = Field(60.0, gt=0)
    max_streams_state: int = Field(64, ge=1, description="per-stream temporal states a replica keeps (LRU)")
    max_width: int = Field(4096, ge=16, description="frame width a JPEG may declare, checked before decoding")
    max_height: int = Field(4096, ge=16, description="frame height a JPEG may declare, checked before decoding")
    max_streams: int = Field(16, ge=1, description="open streams per stream-gateway replica")
    max_streams_per_key: int = Field(4, ge=1, description="open streams of one API key per stream-gateway replica")
    max_stream_seconds: float = Field(3600.0, gt=0, description="a stream is ended after this long")


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_ttl_hours: float = Field(72.0, gt=0, description="finished jobs' files are deleted this long after they end")
    owner_quota_bytes: int = Field(50 * 1024**3, ge=0, description="job files and uploads one owner may hold")
    owner_quotas: dict[str, int] = Field(default_factory=dict, description="per-owner overrides of owner_quota_bytes")
    min_free_bytes: int = Field(5 * 1024**3, ge=0, description="free space the state volume keeps after an upload")
    sweep_every_s: float = Field(300.0, gt=0, description="how often the job manager deletes expired and left-over files")
    leftover_age_s: float = Field(3600.0, ge=0, description="age at which an unfinished upload or temp file is a leftover")


    def quota_of(self, owner: str) -> int:
        return self.owner_quotas.get(owner, self.owner_quota_bytes)


class ClusterSettings(BaseModel):
    """Several nodes: which paths every node must see as the same files, and what is checked at start."""
    model_config = ConfigDict(extra="forbid")
    shared_paths: list[Literal["state_dir", "input_roots", "keys_file"]] = Field(
        default_factory=lambda: ["state_dir", "input_roots"],
                                    description="settings naming paths on a mount every node sees (NFS/SMB)")
    check_nodes: bool = Field(True, description="at start, check every node sees the head's state directory")
    check_timeout_s: float = Field(60.0, gt=0)


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state_dir: str = "~/.vfx/serve"
    keys_file: str = "~/.vfx/serve/keys.yaml"
    input_roots: list[str] = Field(default_factory=list, description="folders whose files a job may name by path")
    limits: UploadLimits = Field(default_factory=UploadLimits)
    jobs: JobSettings = Field(default_factory=JobSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    consent_db: str | None = None
    jobs_db: str | None = Field(None, description="job records URL (postgresql://...); default SQLite in the state "
                                                   "dir, which only one node may use")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    render_nice: int = Field(19, ge=0, le=19, description="niceness of the replicas that render frames (ChunkWorker, "
                                                          "Frames): the proxy and gateways answer first on a full CPU")
    log_level: str = "INFO"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    @property
    def db_url(self) -> str:
        return self.jobs_db or f"sqlite:///{self.state_path / 'jobs.sqlite'}"


def load_settings(args: dict[str, Any] | None) -> ServeSettings:
    try:
        return ServeSettings.model_validate(args or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise VfxError(f"serve settings: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
