"""What a gate baseline was measured on: the workload's contents, the server build, the
model and drafter files, and the hardware. A check on other terms is reported as such."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autotune.workload import Workload

HEADER_BYTES = 1 << 20  # a GGUF's header and tensor index: hashing whole models takes minutes


def workload_fingerprint(workload: Workload) -> str:
    """sha256 of the prompts themselves (not their file names or order on disk)."""
    canonical = json.dumps([asdict(p) for p in workload.prompts], sort_keys=True,
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def file_identity(path: str) -> dict[str, Any]:
    """Name, size and the sha256 of the first MiB: enough to tell two model files apart."""
    file = Path(path)
    if not file.is_file():
        return {"name": file.name, "size": None, "header_sha256": None}
    with file.open("rb") as handle:
        digest = hashlib.sha256(handle.read(HEADER_BYTES)).hexdigest()[:16]
    return {"name": file.name, "size": file.stat().st_size, "header_sha256": digest}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> list[str]:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        result = subprocess.run(  # noqa: S603 - an argument list, never a shell
            [tool, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
            text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def hardware() -> dict[str, Any]:
    return {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "gpus": _gpu_names()}


# Terms a comparison across time is meaningless without; a new model or drafter file is what a
# gate is there to judge, so those are reported, not refused.
BLOCKING = ("workload", "build", "hardware")


def differences(recorded: dict[str, Any], current: dict[str, Any],
                keys: tuple[str, ...] = ("workload", "build", "model", "drafter", "hardware"),
                ) -> list[str]:
    """One short phrase per fingerprint part that changed, e.g. "server build b6000 -> b6100"."""
    names = {"workload": "workload", "build": "server build", "model": "model file",
             "drafter": "drafter file", "hardware": "hardware"}
    changed = []
    for key, name in names.items():
        if key not in keys:
            continue
        was, now = recorded.get(key), current.get(key)
        if was != now:
            changed.append(f"{name} {_short(was)} -> {_short(now)}")
    return changed


def _short(value: Any) -> str:
    if isinstance(value, dict):
        if "header_sha256" in value:
            return f"{value.get('name')} ({value.get('size')} bytes, {value.get('header_sha256')})"
        if "cpu" in value:
            gpus = ", ".join(value.get("gpus") or []) or "no GPU"
            return f"{value.get('cpu')} x{value.get('logical_cpus')} ({gpus})"
    return str(value)
