"""Server kinds, registered by name."""

from __future__ import annotations

from autotune.backends.base import Backend, LaunchSettings, ServerTimings, SpecCounters
from autotune.backends.ik_llama import IkLlamaBackend
from autotune.backends.llama_cpp import LlamaCppBackend
from autotune.backends.sglang import SglangBackend
from autotune.backends.vllm import VllmBackend

_REGISTRY: dict[str, Backend] = {
    backend.name: backend
    for backend in (LlamaCppBackend(), IkLlamaBackend(), VllmBackend(), SglangBackend())
}


def get_backend(kind: str) -> Backend:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise KeyError(
            f"server kind {kind!r} is not registered; available: {', '.join(_REGISTRY)}"
        ) from None


def backend_names() -> list[str]:
    return list(_REGISTRY)


__all__ = [
    "Backend", "LaunchSettings", "ServerTimings", "SpecCounters", "get_backend", "backend_names",
]
