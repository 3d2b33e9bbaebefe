"""The quality guard: a quantized KV cache (or another flash-attention path) is not lossless;
here `-ctk q8_0 -ctv q8_0 -fa on` changed 3 of 12 greedy answers. For every such setting a
study tries, the greedy outputs on the workload's first prompts are compared once with the
reference (f16 KV, no drafting, the server's defaults), stored, shown next to tokens/s, and
judged against ``limits.max_quality_loss``. Drafting is not compared here: at temperature 0 it
is lossless by design, which `autotune gate check` verifies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autotune.backends import Backend, LaunchSettings
from autotune.greedy import GreedyOutputs, OutputsError, compare_outputs, greedy_outputs
from autotune.space import BASELINE, HUB_BASELINE, SpecConfig
from autotune.store import repository as repo
from autotune.store.repository import AgreementRecord
from autotune.store.session import Store
from autotune.workload import Prompt



def setting_of(config: SpecConfig) -> str:
    """The part of a setup that can change outputs: KV types and flash attention."""
    return f"kv {config.cache_type_k}/{config.cache_type_v} fa-{config.flash_attn}"


# llama.cpp's and vLLM's/SGLang's labels of one setting: unquantized KV, no flag.
REFERENCES = (setting_of(BASELINE), setting_of(HUB_BASELINE))


def quality_violation(record: AgreementRecord | None, max_loss: float | None) -> str | None:
    """The limit a setting breaks, worded as the other limits are, or ``None``."""
    if record is None or max_loss is None or record.loss <= max_loss + 1e-12:
        return None
    return f"quality_loss {record.loss:.2f} > {max_loss:.2f}"


@dataclass
class QualityGuard:
    store: Store
    study_id: int
    backend: Backend
    settings: LaunchSettings
    prompts: list[Prompt]
    log_dir: Path
    startup_timeout_s: float
    request_timeout_s: float
    reference: SpecConfig = BASELINE  # no drafting at the server's defaults, as its kind labels it
    _reference: GreedyOutputs | None = field(default=None, init=False)
    _unreadable: set[str] = field(default_factory=set, init=False)  # tried once, failed

    def agreement(self, config: SpecConfig) -> AgreementRecord | None:
        """The stored agreement of ``config``'s setting, measured on first need; ``None`` for
        the reference itself, when off, or when the outputs could not be read."""
        setting = setting_of(config)
        if setting in REFERENCES or not self.prompts or setting in self._unreadable:
            return None
        known = repo.study_agreements(self.store, self.study_id)
        if setting in known:
            return known[setting]
        plain = SpecConfig(cache_type_k=config.cache_type_k, cache_type_v=config.cache_type_v,
                           flash_attn=config.flash_attn)
        try:
            if self._reference is None:
                self._reference = self._outputs(self.reference, "reference")
            outputs = self._outputs(plain, setting.replace(" ", "-").replace("/", "-"))
        except OutputsError:
            self._unreadable.add(setting)
            return None  # the trial's own launch will report why the server fails
        compared = compare_outputs(self.prompts, self._reference, outputs)
        record = AgreementRecord(
            setting=setting, compared=len(compared),
            identical=sum(c.identical for c in compared),
            mean_edit_distance=sum(c.edit_distance for c in compared) / len(compared),
            first_divergences=[c.first_divergence for c in compared])
        repo.save_agreement(self.store, self.study_id, record)
        return record

    def _outputs(self, config: SpecConfig, name: str) -> GreedyOutputs:
        return greedy_outputs(self.backend, self.settings, config, self.prompts,
                              log_path=self.log_dir / f"greedy-{name}.log",
                              startup_timeout_s=self.startup_timeout_s,
                              request_timeout_s=self.request_timeout_s)


def agreement_label(record: AgreementRecord | None, config: SpecConfig) -> str:
    """The table's column: "ref" for the reference setting, "-" when not measured."""
    if setting_of(config) in REFERENCES:
        return "ref"
    return "-" if record is None else f"{record.identical}/{record.compared}"
