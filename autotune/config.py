"""The tune spec: a TOML file validated into typed values.

Validation errors become one ``SpecError`` line that names the file, the key, what was wrong and
how to fix it. Relative paths are resolved against the spec file's folder.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from autotune.backends import get_backend
from autotune.errors import SpecError
from autotune.space import SearchSpace
from autotune.space_spec import SpaceSpec, SpecModel, check_space_fits

SERVER_KINDS = ("llama.cpp", "ik_llama.cpp", "vllm", "sglang")


class ServerSpec(SpecModel):
    kind: Literal["llama.cpp", "ik_llama.cpp", "vllm", "sglang"] = "llama.cpp"
    binary: str = "embedded"
    model: str = "embedded:gemma3-270m"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    ctx_size: Annotated[int, Field(ge=128)] = 2048
    threads: Annotated[int, Field(ge=1)] | None = None
    parallel: Annotated[int, Field(ge=1)] = 1
    gpu_layers: Annotated[int, Field(ge=0)] | None = None
    extra_args: list[str] = []
    startup_timeout_s: Annotated[float, Field(gt=0)] = 180.0

    @property
    def loads_gguf(self) -> bool:
        """llama-server and the ik fork load GGUF files; vLLM and SGLang load Hugging Face ids
        or folders (an EAGLE head is a folder), which only the server itself can check."""
        return self.kind in ("llama.cpp", "ik_llama.cpp")


class WorkloadSpec(SpecModel):
    files: list[str] = ["embedded:mixed"]
    concurrency: list[Annotated[int, Field(ge=1)]] = [1]
    warmup_requests: Annotated[int, Field(ge=0)] = 1
    requests: Annotated[int, Field(ge=1)] = 6
    request_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # overrides each prompt's own
    # Prompts whose greedy outputs are compared with the reference (f16 KV, no drafting) for
    # every other KV / flash-attention setting a study tries; 0 turns the comparison off.
    quality_prompts: Annotated[int, Field(ge=0)] = 8


class LimitsSpec(SpecModel):
    ttft_p95_ms: Annotated[float, Field(gt=0)] | None = None
    tpot_p95_ms: Annotated[float, Field(gt=0)] | None = None
    e2e_p95_ms: Annotated[float, Field(gt=0)] | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Share of greedy outputs a KV / flash-attention setting may change against the reference;
    # 0 keeps every setting that changes any output out of the recommendation.
    max_quality_loss: Annotated[float, Field(ge=0, le=1)] | None = None


class SearchSpec(SpecModel):
    strategy: str = "spec-model"
    trials: Annotated[int, Field(ge=1)] = 16
    seed: int = 0
    # Where per-request draft parameters are probed to reach the server (the ik fork), try
    # draft-max, n-min and p-min of one drafter inside one launch; false relaunches every setup.
    reuse_launches: bool = True


class FinishSpec(SpecModel):
    """The noise-aware finish: re-measure the best setups interleaved before recommending."""

    finalists: Annotated[int, Field(ge=0)] = 2
    rounds: Annotated[int, Field(ge=2)] = 4
    # While the decision is unsettled (a drafting lead not yet shown, or a pick not yet sure to
    # be within min_gain of the best finalist), measure 2 more rounds at a time up to this
    # many; equal to ``rounds`` turns that off.
    max_rounds: Annotated[int, Field(ge=2)] = 12
    requests_per_round: Annotated[int, Field(ge=1)] = 3
    min_gain: Annotated[float, Field(ge=0)] = 0.02  # a gain below this is called a tie
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    # Rounds measured again because outside load disturbed them (see autotune.interference).
    remeasure_rounds: Annotated[int, Field(ge=0)] = 2
    # Where the server has its own run-time tuner (ik_llama.cpp --spec-autotune), the best
    # drafting finalist also runs with it, measured the same way, as one more finalist.
    server_tuner: bool = True

    @model_validator(mode="after")
    def _enough_rounds(self) -> FinishSpec:
        if self.max_rounds < self.rounds:
            raise ValueError(f"max_rounds ({self.max_rounds}) is below rounds ({self.rounds}); "
                             "set max_rounds >= rounds (equal turns extra rounds off)")
        return self


class StoreSpec(SpecModel):
    path: str = "autotune.db"


class GateSpec(SpecModel):
    """The CI regression gate (``autotune gate``): the pinned setup and how strict to be."""

    # The pinned setup's parameters (as `autotune show --json` prints them under "params");
    # `gate record --study NAME` takes a stored recommendation instead.
    setup: dict[str, Any] | None = None
    launches: Annotated[int, Field(ge=2)] = 6  # per side at the first look
    max_launches: Annotated[int, Field(ge=2)] = 12  # per side, while the answer is unclear
    confirm_launches: Annotated[int, Field(ge=0)] = 2  # more, before a red verdict
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.10  # "no more than 10% slower"
    acceptance_tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05  # absolute drop allowed
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    on_inconclusive: Literal["exit-3", "pass", "fail"] = "exit-3"
    correctness_prompts: Annotated[int, Field(ge=0)] = 6  # greedy outputs compared
    # Drafting may change a greedy token only where the no-drafting run's own log-probabilities
    # put its choice within this many nats of the drafted run's token (a near-tie that the
    # rounding of batched verification can tip); 0 fails on any changed token.
    near_tie_nats: Annotated[float, Field(ge=0)] = 0.1
    # Agreement with the reference (f16 KV, no drafting) below 1 - this fails the gate.
    max_quality_loss: Annotated[float, Field(ge=0, le=1)] | None = None

    @field_validator("setup")
    @classmethod
    def _a_real_setup(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from autotune.space import SpecConfig

            try:
                SpecConfig.from_params(value)
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"not a setup ({error}); give method and its knobs, e.g. "
                                 "{ method = 'ngram-mod', draft_max = 16 }") from None
        return value

    @model_validator(mode="after")
    def _enough_launches(self) -> GateSpec:
        if self.max_launches < self.launches:
            raise ValueError(f"max_launches ({self.max_launches}) is below launches "
                             f"({self.launches}); set max_launches >= launches")
        return self


class SidecarSpec(SpecModel):
    """``autotune sidecar``: the live server it watches and what it may do about drift."""

    server_url: str | None = None  # the live server, e.g. http://127.0.0.1:8080 (--server)
    listen_host: str = "127.0.0.1"  # where /metrics, /healthz, /recommendation, /retune answer
    listen_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    interval_s: Annotated[float, Field(gt=0)] = 15.0  # one window per scrape
    reference_windows: Annotated[int, Field(ge=8)] = 40  # windows that define "normal"
    min_window_tokens: Annotated[int, Field(ge=1)] = 32  # quieter windows are not judged
    min_shift: Annotated[float, Field(gt=0, lt=1)] = 0.10  # smallest drift worth acting on
    draft_max: Annotated[int, Field(ge=1)] | None = None  # default: from the server's counters
    retune_on_drift: bool = False  # start a canary study on a drift alarm
    retune_every_s: Annotated[float, Field(ge=0)] = 0.0  # 0: never on a schedule
    retune_trials: Annotated[int, Field(ge=1)] | None = None  # default: search.trials
    # Run after a retune publishes; an element "{argv}" becomes the recommended launch's
    # arguments. Never run through a shell. Empty: advise only.
    apply_command: list[str] = []


class TuneSpec(SpecModel):
    name: str | None = None
    server: ServerSpec = ServerSpec()
    space: SpaceSpec = SpaceSpec()
    workload: WorkloadSpec = WorkloadSpec()
    limits: LimitsSpec = LimitsSpec()
    search: SearchSpec = SearchSpec()
    finish: FinishSpec = FinishSpec()
    store: StoreSpec = StoreSpec()
    gate: GateSpec = GateSpec()
    sidecar: SidecarSpec = SidecarSpec()

    @model_validator(mode="after")
    def _fits_the_server(self) -> TuneSpec:
        check_space_fits(self.space, get_backend(self.server.kind))
        return self

    def search_space(self) -> SearchSpace:
        """The space to search, with the server kind's own rules."""
        return self.space.to_space(get_backend(self.server.kind))

    @model_validator(mode="after")
    def _quality_is_measured(self) -> TuneSpec:
        if self.limits.max_quality_loss is not None and self.workload.quality_prompts == 0:
            raise ValueError("limits.max_quality_loss needs workload.quality_prompts > 0 (the "
                             "greedy outputs it is judged on); set quality_prompts = 8")
        return self

    @model_validator(mode="after")
    def _slots_cover_concurrency(self) -> TuneSpec:
        top = max(self.workload.concurrency)
        if self.server.parallel < top:
            raise ValueError(
                f"server.parallel ({self.server.parallel}) is below the highest workload "
                f"concurrency ({top}); set server.parallel = {top}"
            )
        return self


_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add it",
}


def _model_at(location: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec section a validation error points into, for naming its valid keys."""
    model: type[BaseModel] = TuneSpec
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def format_validation_error(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    fix = _FIXES.get(first["type"], "")
    if first["type"] == "extra_forbidden":
        section = _model_at(tuple(first["loc"][:-1]))
        known = list(section.model_fields) if section else []
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        if close:
            fix = f"did you mean {close[0]!r}?"
        elif known:
            fix = f"valid keys here: {', '.join(known)}"
    quiet = first["type"] in ("missing", "extra_forbidden") or isinstance(first["input"], dict)
    got = "" if quiet else f" (got {first['input']!r})"
    line = f"{source}: {location + ': ' if location else ''}{message}{got}"
    return f"{line}; {fix}" if fix else line


def _resolve(path: str, base: Path) -> str:
    if path.startswith(("embedded", "simulated:")) or "://" in path:
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (base / candidate).resolve())


def _resolve_model(value: str, base: Path, *, hub: bool) -> str:
    """vLLM and SGLang load a Hugging Face repo id (``Qwen/Qwen3-8B``) as well as a folder: an
    id is passed on as written, unless a folder of that name sits next to the spec. A path
    written as one (``./``, ``../``, ``~``, ``/``) is always a path."""
    if hub and not value.startswith((".", "~", "/")) and not (base / value).exists():
        return value
    return _resolve(value, base)


def parse_spec(data: dict[str, Any], *, source: str, base_dir: Path) -> TuneSpec:
    try:
        spec = TuneSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(source, error)) from None
    hub = not spec.server.loads_gguf
    server = spec.server.model_copy(
        update={
            "model": _resolve_model(spec.server.model, base_dir, hub=hub),
            "binary": spec.server.binary
            if "/" not in spec.server.binary
            else _resolve(spec.server.binary, base_dir),
        }
    )
    space = spec.space.model_copy(
        update={"drafters": [_resolve_model(d, base_dir, hub=hub) for d in spec.space.drafters]}
    )
    workload = spec.workload.model_copy(
        update={"files": [_resolve(f, base_dir) for f in spec.workload.files]}
    )
    store = spec.store.model_copy(update={"path": _resolve(spec.store.path, base_dir)})
    gate = spec.gate
    if gate.setup and isinstance(gate.setup.get("drafter"), str):
        setup = {**gate.setup, "drafter": _resolve_model(gate.setup["drafter"], base_dir, hub=hub)}
        gate = gate.model_copy(update={"setup": setup})
    return spec.model_copy(
        update={"server": server, "space": space, "workload": workload, "store": store,
                "gate": gate}
    )


def load_spec(path: Path) -> TuneSpec:
    if not path.is_file():
        raise SpecError(f"tune spec not found: {path}; pass the path of a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not valid TOML ({error}); fix the syntax") from None
    return parse_spec(data, source=str(path), base_dir=path.parent.resolve())
