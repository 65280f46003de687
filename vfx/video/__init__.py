"""Video and image-sequence input/output."""
from vfx.video.probe import FrameRange, VideoInfo, parse_frame_range, probe
from vfx.video.reader import FrameReader
from vfx.video.writer import FrameWriter, MatteWriter

__all__ = ["FrameRange", "VideoInfo", "parse_frame_range", "probe", "FrameReader", "FrameWriter", "MatteWriter"]
