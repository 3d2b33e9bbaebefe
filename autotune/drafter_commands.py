"""`autotune drafters`: the catalog of a spec's verifier and drafters, checked as every launch
checks them, and `autotune drafters quantize`: a quant ladder of one drafter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autotune.cli_options import SpecArg

drafters_app = typer.Typer(help="Check drafter files against the verifier; make a quant ladder.")



def _catalog(spec_path: Path | None) -> None:
    from autotune.cli import _load, user_errors

    with user_errors():
        from autotune.drafters import check_drafters, read_gguf
        from autotune.embedded import resolve_files

        spec = resolve_files(_load(spec_path, {})[0])
        rows = [("verifier", spec.server.model)] + [("drafter", d) for d in spec.space.drafters]
        typer.echo(f"{'role':<9} {'file':<34} {'arch':<8} {'vocab':>7} {'tokenizer':<22} "
                   f"{'quant':<8} {'bpw':>5} {'size':>9}")
        for role, path in rows:
            info = read_gguf(path)
            bpw = f"{info.bits_per_weight:.2f}" if info.bits_per_weight else "-"
            typer.echo(f"{role:<9} {Path(path).name:<34} {info.architecture or '-':<8} "
                       f"{info.vocab_size or 0:>7} "
                       f"{(info.tokenizer or '-') + ' ' + (info.tokenizer_fingerprint or '-'):<22} "
                       f"{info.file_type or '-':<8} {bpw:>5} {info.size_bytes / 2**20:>7.1f}MiB")
        for line in check_drafters(spec.server.model, spec.space.drafters):
            typer.echo(f"warning: {line}")
        typer.echo("every drafter shares the verifier's vocabulary and tokenizer")


@drafters_app.callback(invoke_without_command=True)
def drafters(context: typer.Context) -> None:
    """With no command: the embedded spec's catalog (as `drafters show`)."""
    if context.invoked_subcommand is None:
        _catalog(None)


@drafters_app.command()
def show(spec_path: SpecArg = None) -> None:
    """List the verifier and drafters; exit 2 if a drafter cannot draft for the verifier.

    Each file's architecture, vocabulary, tokenizer, quantization, bits per weight and size."""
    _catalog(spec_path)


@drafters_app.command()
def quantize(
    source: Annotated[str, typer.Argument(help="GGUF to quantize (or embedded:gemma3-270m).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the ladder.")] = Path("drafters"),
    types: Annotated[str, typer.Option(help="Comma-separated llama-quantize types.")] = "Q8_0,Q6_K,Q5_K_M,Q4_K_M",
    quantize_bin: Annotated[Optional[Path], typer.Option("--llama-quantize", help="llama-quantize binary (default: the embedded build's).")] = None,  # noqa: UP045
) -> None:
    """Make a quant ladder of one drafter, so the quant axis can be searched from one file.

    Uses the build's llama-quantize; prints the lines to paste into space.drafters."""
    from autotune.cli import user_errors

    with user_errors():
        from autotune.drafters import quantize_ladder, read_gguf
        from autotune.embedded import MODEL_NAME, check_gguf, embedded_model, tool_path
        from autotune.errors import SpecError

        path = embedded_model() if source == MODEL_NAME else source
        if source != MODEL_NAME:
            check_gguf(path, "source file", "SOURCE")
        tool = quantize_bin or tool_path("llama-quantize")
        if not Path(tool).is_file():
            raise SpecError(f"llama-quantize not found at {tool}; pass --llama-quantize PATH")
        wanted = [t.strip() for t in types.split(",") if t.strip()]
        if not wanted:
            raise SpecError("--types is empty; give e.g. Q8_0,Q4_K_M")
        made = quantize_ladder(path, out, wanted, Path(tool))
        for target in made:
            info = read_gguf(str(target))
            typer.echo(f"{target}  {info.file_type}  {info.bits_per_weight or 0:.2f} bpw  "
                       f"{info.size_bytes / 2**20:.1f} MiB")
        typer.echo("space.drafters = [" + ", ".join(f'"{t}"' for t in made) + "]")
