"""Drafter files checked before any launch (`autotune drafters`, and `tune` itself): a drafter
with another vocabulary is refused with both sizes named, leaked imatrix keys and sub-4-bit
drafters are warned about, the embedded catalog lists quant types and bits per weight, and a
quant ladder comes from the build's llama-quantize. The odd files are real GGUF files written
by the `gguf` package for the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
from typer.testing import CliRunner

from autotune.cli import app

runner = CliRunner()


def write_gguf(path: Path, *, vocab: int, file_type: int = 7,
               imatrix: str | None = None) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("test model written by the test suite")
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i}" for i in range(vocab)])
    writer.add_file_type(file_type)
    if imatrix:
        writer.add_string("quantize.imatrix.file", imatrix)
        writer.add_string("quantize.imatrix.dataset", "/srv/build/calibration.txt")
    writer.add_tensor("token_embd.weight", np.zeros((vocab, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_drafter_with_another_vocabulary_is_refused_before_launch(
        write_spec: Callable[..., Path], tmp_path: Path, real_model: str) -> None:
    other = write_gguf(tmp_path / "other-vocab.gguf", vocab=1000)
    spec = write_spec(space={"methods": ["none", "draft-simple"], "drafters": [str(other)],
                             "draft_max": {"low": 2, "high": 4}})
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 2, result.stdout
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "other-vocab.gguf has a vocabulary of 1000 tokens" in line
    assert "gemma-3-270m-q4_k_m.gguf 262144" in line
    assert not (tmp_path / "results.db").exists() or "study" not in result.stdout


def test_imatrix_keys_and_low_bit_drafters_are_warned_about(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    verifier = write_gguf(tmp_path / "verifier.gguf", vocab=300)
    drafter = write_gguf(tmp_path / "drafter-q2_k.gguf", vocab=300, file_type=10,
                         imatrix="/home/builder/imatrix/model.imatrix")
    spec = write_spec(server={"model": str(verifier)},
                      space={"methods": ["none", "draft-simple"], "drafters": [str(drafter)]})
    result = runner.invoke(app, ["drafters", "show", str(spec)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "quantize.imatrix.file = '/home/builder/imatrix/model.imatrix'" in result.stdout
    assert "drafter-q2_k.gguf is Q2_K (below 4 bits)" in result.stdout


def test_the_catalog_lists_the_embedded_drafters_with_quant_and_bits(real_drafter: str) -> None:
    result = runner.invoke(app, ["drafters"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    verifier = next(line for line in lines if line.startswith("verifier"))
    assert "gemma3" in verifier and "262144" in verifier and "Q4_K_M" in verifier
    drafters = [line for line in lines if line.startswith("drafter ")]
    assert {"Q8_0", "Q4_0"} <= {word for line in drafters for word in line.split()}
    assert all(float(line.split()[-2]) > 4 and line.endswith("MiB") for line in drafters)
    assert "every drafter shares the verifier's vocabulary and tokenizer" in result.stdout


def test_a_quant_ladder_from_one_file(tmp_path: Path, real_model: str) -> None:
    result = runner.invoke(app, ["drafters", "quantize", "embedded:gemma3-270m", "--types",
                                 "Q8_0,Q4_K_M", "--out", str(tmp_path / "ladder")])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    made = sorted(p.name for p in (tmp_path / "ladder").glob("*.gguf"))
    assert made == ["gemma-3-270m-q4_k_m-q4_k_m.gguf", "gemma-3-270m-q4_k_m-q8_0.gguf"]
    assert "Q8_0" in result.stdout and "Q4_K_M" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("space.drafters = [")
    bad = runner.invoke(app, ["drafters", "quantize", "embedded:gemma3-270m", "--types",
                              "Q9_X", "--out", str(tmp_path / "ladder")])
    assert bad.exit_code == 2 and "could not make Q9_X" in bad.stderr
