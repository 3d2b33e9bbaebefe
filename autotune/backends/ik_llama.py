"""The ik_llama.cpp fork. Not run here (no build of the fork on PyPI); flags follow the fork's
documented usage: ``--spec-type mtp --model-draft D --draft-max N --draft-p-min P`` and the
pre-rename KV/attention spellings."""

from __future__ import annotations

from autotune.backends.base import LaunchSettings
from autotune.backends.llama_cpp import LlamaCppBackend
from autotune.space import SpecConfig, drafts, uses_drafter

# The fork names MTP "mtp"; its ngram and draft-model paths keep mainline's older names.
_METHOD_NAMES = {"draft-mtp": "mtp", "draft-simple": "draft"}


class IkLlamaBackend(LlamaCppBackend):
    name = "ik_llama.cpp"
    methods: tuple[str, ...] = ("none", "draft-simple", "draft-mtp", "ngram-simple", "ngram-mod")

    kv_flags: tuple[str, str, str] = ("-ctk", "-ctv", "-fa")
    draft_gpu_flags: tuple[str, ...] = ("-ngld", "--n-gpu-layers-draft")

    def config_argv(self, config: SpecConfig) -> list[str]:
        argv = self.cache_argv(config)
        if drafts(config.method):
            method = _METHOD_NAMES.get(config.method, config.method)
            if method != "draft":
                argv += ["--spec-type", method]
            argv += ["--draft-max", str(config.draft_max)]
        if uses_drafter(config.method):
            assert config.drafter is not None and config.p_min is not None
            argv += ["--model-draft", config.drafter, "--draft-p-min", f"{config.p_min:g}"]
        return argv

    def launch_argv(self, launch: LaunchSettings, config: SpecConfig) -> list[str]:
        extra = list(launch.extra_args)
        return (self.common_argv(launch) + self.config_argv(config)
                + self.draft_offload_argv(launch, config, extra) + extra)
