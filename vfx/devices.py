"""Device choice: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``, and a batch size that fits it."""
from __future__ import annotations

import logging

from vfx.errors import VfxError

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 8


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not cuda_available():
            raise VfxError(f"--device {name}: no CUDA GPU is available here (use --device cpu or auto)")
        import torch

        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise VfxError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return name
    raise VfxError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")


def default_batch_size(device: str, bytes_per_frame: int = 0) -> int:
    """CPU: enough frames to keep every core busy. CUDA: what a quarter of free memory holds."""
    if not device.startswith("cuda"):
        return CPU_BATCH_SIZE
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    per_frame = max(bytes_per_frame, 64 * 1024 * 1024)
    return int(max(1, min(64, (free // 4) // per_frame)))
