"""Where a result came from: the git commit of the code and the device it ran on."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def git_commit(root: str | Path | None = None, short: bool = False) -> str:
    """``git rev-parse HEAD`` in ``root`` (default: this checkout), or "unknown" outside a repository."""
    cmd = ["git", "rev-parse", "--short", "HEAD"] if short else ["git", "rev-parse", "HEAD"]
    try:
        res = subprocess.run(cmd, cwd=root or _HERE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"


def device_name(device) -> str:
    """A readable name of a torch device: the GPU model, or the CPU with its core count."""
    import os

    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
