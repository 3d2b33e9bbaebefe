"""Drafter files checked before any launch, with the llama.cpp project's own `gguf` reader:
architecture, vocabulary size and a tokenizer fingerprint, quantization type, bits per weight
and size, for the verifier and every drafter. A drafter whose vocabulary or tokenizer differs
from the verifier's cannot draft for it: refused before a server starts, naming both values.
Warned about: leaked ``quantize.imatrix.*`` keys (build-host paths baked into a published
file) and drafter quantizations below 4 bits, which accept too little to pay for themselves.

Reading a GGUF's header means parsing its whole vocabulary (seconds for 262,144 tokens), so
each file's summary is cached by path, size and modification time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autotune.errors import SpecError

LOW_BIT_MARKERS = ("IQ1", "IQ2", "IQ3", "Q2_K", "Q3_K", "TQ1", "TQ2")
IMATRIX_KEYS = ("quantize.imatrix.file", "quantize.imatrix.dataset")
LADDER = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")


@dataclass(frozen=True)
class GgufInfo:
    path: str
    size_bytes: int
    architecture: str | None
    name: str | None
    vocab_size: int | None
    tokenizer: str | None  # tokenizer model, e.g. "llama" (SentencePiece) or "gpt2" (BPE)
    tokenizer_fingerprint: str | None  # sha256 of the token list, first 16 hex digits
    file_type: str | None  # e.g. "Q4_K_M", from general.file_type
    parameters: int
    imatrix: dict[str, str] = field(default_factory=dict)  # leaked quantize.imatrix.* values

    @property
    def bits_per_weight(self) -> float | None:
        """File size over parameter count, as llama.cpp prints it ("BPW")."""
        return self.size_bytes * 8 / self.parameters if self.parameters else None

    @property
    def low_bit(self) -> bool:
        return any(marker in (self.file_type or "") for marker in LOW_BIT_MARKERS)


def _cache_path(path: Path) -> Path:
    from autotune.embedded import cache_dir

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_dir() / "gguf-info" / f"{key.hexdigest()[:24]}.json"


def read_gguf(value: str) -> GgufInfo:
    """The summary of one GGUF file (cached); ``SpecError`` when it cannot be read."""
    path = Path(value)
    cached = _cache_path(path)
    if cached.is_file():
        try:
            return GgufInfo(**json.loads(cached.read_text()))
        except (ValueError, TypeError):
            pass  # an older or damaged cache entry: read the file again
    info = _read_header(path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(info)))
    partial.replace(cached)
    return info


def _read_header(path: Path) -> GgufInfo:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise SpecError(f"{path}: cannot read its GGUF header ({error}); is the file "
                        "complete?") from None

    def text(key: str) -> str | None:
        entry = reader.fields.get(key)
        value = entry.contents() if entry is not None else None
        return str(value) if value is not None else None

    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    tokens = tokens_field.contents() if tokens_field is not None else None
    fingerprint = None
    if isinstance(tokens, list):
        joined = "\n".join(str(t) for t in tokens).encode("utf-8", errors="surrogatepass")
        fingerprint = hashlib.sha256(joined).hexdigest()[:16]
    file_type = None
    raw_type = reader.fields.get("general.file_type")
    if raw_type is not None:
        try:
            file_type = gguf.LlamaFileType(int(raw_type.contents())).name.removeprefix("MOSTLY_")
        except ValueError:
            file_type = f"type {raw_type.contents()}"
    imatrix = {key: str(text(key)) for key in IMATRIX_KEYS if key in reader.fields}
    return GgufInfo(
        path=str(path), size_bytes=path.stat().st_size, architecture=text("general.architecture"),
        name=text("general.name"), vocab_size=len(tokens) if isinstance(tokens, list) else None,
        tokenizer=text("tokenizer.ggml.model"), tokenizer_fingerprint=fingerprint,
        file_type=file_type, parameters=sum(int(t.n_elements) for t in reader.tensors),
        imatrix=imatrix)


def refusal(verifier: GgufInfo, drafter: GgufInfo) -> str | None:
    """Why ``drafter`` cannot draft for ``verifier`` (one line naming both values), if so."""
    name, vname = Path(drafter.path).name, Path(verifier.path).name
    if drafter.vocab_size != verifier.vocab_size:
        return (f"drafter {name} has a vocabulary of {drafter.vocab_size} tokens, the verifier "
                f"{vname} {verifier.vocab_size}; a drafter must share its verifier's vocabulary "
                "(use one of the same model family)")
    if drafter.tokenizer_fingerprint != verifier.tokenizer_fingerprint:
        return (f"drafter {name}'s tokenizer (fingerprint {drafter.tokenizer_fingerprint}) differs "
                f"from the verifier {vname}'s ({verifier.tokenizer_fingerprint}) at the same "
                "vocabulary size; use a drafter of the same model family")
    return None


def warnings_for(info: GgufInfo, *, role: str) -> list[str]:
    name = Path(info.path).name
    found = []
    if info.imatrix:
        found.append(f"{role} {name} carries " + ", ".join(
            f"{k} = {v!r}" for k, v in info.imatrix.items())
            + " (build-host paths baked in by the quantizer; harmless to run, worth stripping "
            "before you publish the file)")
    if role == "drafter" and info.low_bit:
        found.append(f"drafter {name} is {info.file_type} (below 4 bits): such drafters accept "
                     "too few tokens to pay for themselves; prefer Q4_K_M or above")
    return found


def check_drafters(verifier: str, drafters: Sequence[str]) -> list[str]:
    """Refuse (``SpecError``) a drafter that cannot draft for ``verifier``; return warnings."""
    main = read_gguf(verifier)
    found = warnings_for(main, role="verifier")
    for drafter in drafters:
        info = read_gguf(drafter)
        problem = refusal(main, info)
        if problem is not None:
            raise SpecError(problem)
        found += warnings_for(info, role="drafter")
    return found


def quantize_ladder(source: str, out_dir: Path, types: Sequence[str], quantize: Path,
                    ) -> list[Path]:
    """Quantize ``source`` to each of ``types`` with the build's ``llama-quantize`` (an
    argument list, never a shell), so the quant axis can be searched from one file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(source).name.removesuffix(".gguf")
    made = []
    for quant in types:
        target = out_dir / f"{stem}-{quant.lower()}.gguf"
        partial = target.with_suffix(".partial")
        result = subprocess.run(  # noqa: S603
            [str(quantize), "--allow-requantize", source, str(partial), quant],
            capture_output=True, text=True, check=False)
        if result.returncode != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SpecError(f"llama-quantize could not make {quant} from {source}: {last[0]}; "
                            "check the type name (llama-quantize --help lists them)")
        os.replace(partial, target)
        made.append(target)
    return made
