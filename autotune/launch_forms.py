"""The recommended launch in the forms people deploy with: a shell command, an environment
file (llama.cpp's ``LLAMA_ARG_*`` variables, read from the build's own ``--help``), ``docker
run``, a llama-swap entry, a systemd drop-in, a Kubernetes container and a JSON config. Every
form is rendered from the same argument list; none is built by pasting strings into a shell."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from autotune.errors import SpecError

FORMS = ("shell", "env", "docker", "llama-swap", "systemd", "kubernetes", "json")
IMAGES = {"llama.cpp": "ghcr.io/ggml-org/llama.cpp:server",
          "ik_llama.cpp": "ik-llama-cpp:server",  # the fork publishes no official image
          "vllm": "vllm/vllm-openai:latest", "sglang": "lmsysorg/sglang:latest"}
CUDA_IMAGES = {"llama.cpp": "ghcr.io/ggml-org/llama.cpp:server-cuda"}
_HUB_KINDS = ("vllm", "sglang")  # PyTorch servers of Hugging Face models, always on GPUs
_GPU_LAYER_FLAGS = ("-ngl", "--n-gpu-layers", "--gpu-layers")
_TENSOR_PARALLEL_FLAGS = ("--tensor-parallel-size", "-tp", "--tp-size", "--tp")  # vLLM, SGLang
# Hub models download into the container: the host's Hugging Face cache keeps them across runs.
_HF_CACHE = "$HOME/.cache/huggingface:/root/.cache/huggingface"
_PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|[\[{<].*|\S+,\S+)$")  # N, FNAME, [on|off], a,b
_ENV = re.compile(r"\(env: (LLAMA_ARG_[A-Z0-9_]+)\)")


def env_names(help_text: str) -> dict[str, tuple[str, bool]]:
    """flag -> (environment variable, takes a value), from a llama.cpp ``--help``."""
    names: dict[str, tuple[str, bool]] = {}
    flags: list[str] = []
    takes_value = False
    for line in help_text.splitlines():
        if line.startswith("-"):
            # "-m,    --model FNAME    model path to load": flags, then at most one value
            # placeholder right after a flag, then the description
            flags, takes_value, after_flag = [], False, False
            for word in line.split():
                if word.startswith("-"):
                    flags.append(word.rstrip(","))
                    after_flag = True
                elif after_flag and _PLACEHOLDER.match(word.rstrip(",")):
                    takes_value, after_flag = True, False
                else:
                    break
        found = _ENV.search(line)
        if found and flags:
            for flag in flags:
                names[flag] = (found.group(1), takes_value)
            flags = []
    return names


def _split(argv: Sequence[str], names: dict[str, tuple[str, bool]]) -> tuple[
        list[tuple[str, str]], list[str]]:
    env: list[tuple[str, str]] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        known = names.get(word)
        if known is None:
            rest.append(word)
            # a flag without a variable keeps its value with it
            if word.startswith("-") and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                rest.append(argv[index + 1])
                index += 1
        elif known[1] and index + 1 < len(argv):
            env.append((known[0], argv[index + 1]))
            index += 1
        else:
            env.append((known[0], "1"))
        index += 1
    return env, rest


def build_help(binary: str) -> str:
    try:
        result = subprocess.run([binary, "--help"], capture_output=True, text=True,  # noqa: S603
                                timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SpecError(f"cannot run {binary} --help for its environment names ({error}); "
                        "use --format shell") from None
    return result.stdout + result.stderr


def env_form(argv: Sequence[str], help_text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``LLAMA_ARG_*`` assignments and the command that is left (flags with no variable,
    such as ``--spec-type``, stay on it)."""
    env, rest = _split(argv[1:], env_names(help_text))
    return env, [argv[0], *rest]


def _env_file(argv: Sequence[str], help_text: str) -> str:
    env, rest = env_form(argv, help_text)
    lines = ["# llama-server reads these; run it as:  set -a; . ./autotune.env; set +a; "
             + shlex.join(rest)]
    lines += [f"{name}={shlex.quote(value)}" for name, value in env]
    return "\n".join(lines)


def _flag_value(argv: Sequence[str], *flags: str) -> str | None:
    for flag in flags:
        if flag in argv[:-1]:
            return argv[list(argv).index(flag) + 1]
    return None


def _replace(argv: Sequence[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    if flag in out[:-1]:
        out[out.index(flag) + 1] = value
    return out


def _files(argv: Sequence[str]) -> list[str]:
    return [word for word in argv[1:] if word.endswith(".gguf") or (
        "/" in word and Path(word).is_file())]


def _on_gpu(argv: Sequence[str], kind: str) -> bool:
    """vLLM and SGLang always run on GPUs; llama.cpp where layers are offloaded."""
    if kind in _HUB_KINDS:
        return True
    layers = _flag_value(argv, *_GPU_LAYER_FLAGS)
    return layers is not None and layers != "0"


def _image(argv: Sequence[str], kind: str) -> str:
    return CUDA_IMAGES.get(kind, IMAGES[kind]) if _on_gpu(argv, kind) else IMAGES[kind]


def _docker(argv: Sequence[str], kind: str) -> str:
    port = _flag_value(argv, "--port") or "8080"
    args = _replace(argv, "--host", "0.0.0.0")  # inside the container; published on 127.0.0.1
    mounts: list[str] = []
    for index, path in enumerate(dict.fromkeys(str(Path(f).parent) for f in _files(argv))):
        mounts += ["-v", f"{path}:/models/{index}:ro"]
        args = [word.replace(path + "/", f"/models/{index}/") if word.startswith(path + "/")
                else word for word in args]
    command = ["docker", "run", "--rm"]
    if _on_gpu(argv, kind):  # without it the container sees no GPU at all
        command.append("--gpus=all")
    hub = kind in _HUB_KINDS
    if hub:  # PyTorch's worker processes share tensors through /dev/shm
        command.append("--ipc=host")
    command += ["-p", f"127.0.0.1:{port}:{port}", *mounts]
    if hub:  # HF_TOKEN passes through from the caller's environment, never written here
        command += ["-e", "HF_TOKEN"]
    image = _image(argv, kind)
    if kind in ("llama.cpp", "ik_llama.cpp"):
        tail = [image, *args[1:]]
    else:
        tail = ["--entrypoint", Path(args[0]).name, image, *args[1:]]
    cache = f' -v "{_HF_CACHE}"' if hub else ""  # double quotes: $HOME expands in the shell
    return shlex.join(command) + cache + " " + shlex.join(tail)


def _systemd_word(word: str) -> str:
    escaped = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_./:,=+@-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd(argv: Sequence[str]) -> str:
    # systemd looks a bare name up in its own fixed path, not the user's (a venv's vllm is
    # not there): the program goes in as the absolute path it has here, where one is found.
    program = argv[0] if os.sep in argv[0] else (shutil.which(argv[0]) or argv[0])
    return "\n".join([
        "# /etc/systemd/system/llama-server.service.d/autotune.conf, then:",
        "#   systemctl daemon-reload && systemctl restart llama-server",
        "[Service]", "ExecStart=",
        "ExecStart=" + " ".join(_systemd_word(w) for w in [program, *argv[1:]])])


def _llama_swap(argv: Sequence[str], name: str) -> str:
    args = _replace(argv, "--port", "${PORT}")
    entry = {"models": {name: {"cmd": shlex.join(args).replace("'${PORT}'", "${PORT}"),
                               "proxy": "http://127.0.0.1:${PORT}"}}}
    return str(yaml.safe_dump(entry, sort_keys=False, width=4096)).rstrip()


def _kubernetes(argv: Sequence[str], kind: str) -> str:
    port = int(_flag_value(argv, "--port") or 8080)
    args = _replace(argv, "--host", "0.0.0.0")  # reached through the pod's Service
    folders = list(dict.fromkeys(str(Path(f).parent) for f in _files(argv)))
    container: dict[str, Any] = {"name": "llama-server" if "llama" in kind else kind,
                                 "image": _image(argv, kind)}
    if kind in ("llama.cpp", "ik_llama.cpp"):
        container["args"] = args[1:]
    else:
        container["command"] = [Path(args[0]).name]
        container["args"] = args[1:]
    container["ports"] = [{"containerPort": port}]
    if _on_gpu(argv, kind):  # the scheduler places the pod only where that many GPUs are free
        tensor_parallel = (_flag_value(argv, *_TENSOR_PARALLEL_FLAGS) if kind in _HUB_KINDS
                           else None)
        gpus = int(tensor_parallel) if tensor_parallel and tensor_parallel.isdigit() else 1
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    container["volumeMounts"] = [{"name": f"models-{i}", "mountPath": folder, "readOnly": True}
                                 for i, folder in enumerate(folders)]
    volumes: list[dict[str, Any]] = [{"name": f"models-{i}", "hostPath": {"path": folder}}
                                     for i, folder in enumerate(folders)]
    if kind in _HUB_KINDS:  # a container's own /dev/shm is 64 MiB: too small for NCCL
        container["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
    return str(yaml.safe_dump({"containers": [container], "volumes": volumes},
                              sort_keys=False, width=4096)).rstrip()


def _json_config(argv: Sequence[str], kind: str) -> str:
    """Flags as a config mapping, keyed by their long names. vLLM (``vllm serve --config
    FILE.yaml``) and SGLang (``python -m sglang.launch_server --config FILE.yaml``) read such a
    file as YAML, of which JSON is a subset, so the launcher's own words (``serve``, ``-m
    MODULE``) are left out and vLLM's positional model becomes its ``model`` key; a JSON-valued
    flag such as ``--speculative-config`` stays structured."""
    words = list(argv[1:])
    if kind == "vllm" and words[:1] == ["serve"]:
        words = words[1:]
        if words and not words[0].startswith("-"):
            words = ["--model", *words]
    if words[:1] == ["-m"]:  # python -m sglang.launch_server
        words = words[2:]
    config: dict[str, Any] = {}
    positional = [w for i, w in enumerate(words) if not w.startswith("-") and (
        i == 0 or not words[i - 1].startswith("-"))]
    if positional:
        config["_positional"] = positional
    for index, word in enumerate(words):
        if not word.startswith("-"):
            continue
        key = word.lstrip("-")
        value: Any = True
        if index + 1 < len(words) and not words[index + 1].startswith("-"):
            value = words[index + 1]
            if value.startswith("{"):
                value = json.loads(value)
        config[key] = value
    return json.dumps(config, indent=2)


def render(form: str, recommendation: dict[str, Any]) -> str:
    if form not in FORMS:
        raise SpecError(f"--format {form!r} is not a launch form; choose one of "
                        f"{', '.join(FORMS)}")
    argv = [str(word) for word in recommendation["command"]]
    kind = str(recommendation.get("server_kind", "llama.cpp"))
    if form == "shell":
        return shlex.join(argv)
    if form == "env":
        if kind not in ("llama.cpp", "ik_llama.cpp"):
            raise SpecError(f"--format env is llama.cpp's LLAMA_ARG_* variables; {kind} has "
                            "none; use --format shell or json")
        return _env_file(argv, build_help(argv[0]))
    if form == "docker":
        return _docker(argv, kind)
    if form == "llama-swap":
        return _llama_swap(argv, f"autotune-{recommendation.get('study', 'pick')}")
    if form == "systemd":
        return _systemd(argv)
    if form == "kubernetes":
        return _kubernetes(argv, kind)
    return _json_config(argv, kind)
