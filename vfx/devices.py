"""Device choice: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``, and a batch size that fits it."""
from __future__ import annotations

import logging

from vfx.errors import VfxError

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 8


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA kernel driver is loaded, without importing torch (1 GB and seconds on a CPU box)."""
    from pathlib import Path

    return Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def cuda_available() -> bool:
    if not nvidia_driver_present():
        return False
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


def torch_dtype(device: str):
    """fp16 on CUDA (tensor cores, half the memory), fp32 on the CPU (fp16 there is slow and lossy)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


def prepare_module(module, device: str, convolutional: bool = True):
    """Move a torch module to ``device`` in its dtype, in eval mode; channels_last for conv nets on CUDA."""
    import torch

    dtype = torch_dtype(device)
    if any(p.dtype != dtype for p in module.parameters()):
        module = module.to(dtype=dtype)
    module = module.to(torch.device(device)).eval()
    if convolutional and device.startswith("cuda"):
        module = module.to(memory_format=torch.channels_last)
    return module


def chunk_limit(device: str, bytes_per_frame: int, batch: int) -> int:
    """How many frames one forward pass takes: the whole batch on the CPU, what free memory holds on CUDA."""
    if not device.startswith("cuda"):
        return max(1, batch)
    return max(1, min(batch, default_batch_size(device, bytes_per_frame)))


def run_chunked(fn, total: int, limit: int, what: str = "batch") -> tuple[list, int]:
    """Call ``fn(slice)`` over ``range(total)`` in chunks of at most ``limit`` items.

    A CUDA out-of-memory error halves the chunk and retries it, down to one item; the limit that
    worked is returned so the caller keeps it for the rest of the shot instead of failing again.
    """
    import torch

    results, start = [], 0
    while start < total:
        size = min(limit, total - start)
        try:
            results.append(fn(slice(start, start + size)))
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise VfxError(f"{what}: out of GPU memory even for one frame; use a smaller model or --device cpu") from None
            limit = size // 2
            log.warning("%s: out of GPU memory at %d frames per pass; retrying with %d", what, size, limit)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start += size
    return results, limit
