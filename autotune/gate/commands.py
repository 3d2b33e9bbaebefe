"""`autotune gate record` and `autotune gate check`: thin commands over ``autotune.gate.run``.
Exit codes: 0 pass, 1 regression, 2 usage or setup error, 3 inconclusive (``gate.on_inconclusive``
may turn that into a pass or a failure)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from autotune.cli_options import SpecArg, StoreOpt

gate_app = typer.Typer(help="CI regression gate: record a pinned setup, then check builds "
                            "against it.", no_args_is_help=True)



def _pinned(spec: Any, store: Any, study: str | None) -> dict[str, Any]:
    from autotune.errors import SpecError
    from autotune.store import repository as repo

    if study is not None:
        record = repo.find_study(store, study)
        if record is None or not record.recommendation:
            names = ", ".join(s.name for s in repo.list_studies(store)
                              if s.recommendation) or "none"
            raise SpecError(f"study {study!r} has no recommendation in {store.url}; "
                            f"studies with one: {names}")
        return dict(record.recommendation["params"])
    if spec.gate.setup is None:
        raise SpecError("no setup to gate: pin one in the spec ([gate] setup = { method = "
                        "'ngram-mod', draft_max = 16 }) or take a study's with --study NAME")
    return dict(spec.gate.setup)


@gate_app.command()
def record(
    spec_path: SpecArg = None,
    out: Annotated[Path, typer.Option("--out", help="Baseline file to write (commit it).")] = Path("gate-baseline.json"),
    study: Annotated[Optional[str], typer.Option(help="Gate this stored study's recommendation.")] = None,  # noqa: UP045
    store: StoreOpt = None,
) -> None:
    """Measure the pinned setup and write a baseline file meant to be committed."""
    from autotune.cli import _load, _log_root, check_drafter_files, check_writable, user_errors

    with user_errors():
        from autotune.embedded import resolve_files, resolve_setup_files
        from autotune.gate.run import record as record_baseline
        from autotune.launcher import server_binary_path
        from autotune.space import SpecConfig
        from autotune.store.session import open_store
        from autotune.workload import load_workload

        spec, _ = _load(spec_path, {"store": store})
        check_writable(out, "--out")
        workload = load_workload(spec.workload.files, max_tokens=spec.workload.max_tokens)
        spec = resolve_files(spec)
        server_binary_path(spec.server.binary)  # before the database is created
        results = open_store(spec.store.path)
        setup = SpecConfig.from_params(resolve_setup_files(spec, _pinned(spec, results, study)))
        check_drafter_files(spec, (setup.drafter,) if setup.drafter else ())
        baseline = record_baseline(spec, results, workload, setup, echo=typer.echo,
                                   log_dir=_log_root(spec) / "gate")
        out.write_text(json.dumps(baseline, indent=2) + "\n")
        values = sorted(r["tokens_per_second"] for r in baseline["launches"])
        typer.echo(f"recorded {setup.describe()}: {len(values)} launches, median "
                   f"{values[len(values) // 2]:.1f} tok/s; baseline written to {out}")


@gate_app.command()
def check(
    baseline_path: Annotated[Path, typer.Argument(help="Baseline file from `gate record`.")],
    spec_path: SpecArg = None,
    ab: Annotated[bool, typer.Option("--ab", help="Measure the baseline's setup again, side by side with the current one, interleaved.")] = False,
    binary_a: Annotated[Optional[str], typer.Option("--binary-a", help="With --ab: the server binary for the baseline side (compare two builds).")] = None,  # noqa: UP045
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Compare with a baseline recorded on other terms (workload, build, files, hardware).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON.")] = None,  # noqa: UP045
    junit_out: Annotated[Optional[Path], typer.Option("--junit", help="Write the report as JUnit XML.")] = None,  # noqa: UP045
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the report as Markdown (also appended to $GITHUB_STEP_SUMMARY when set).")] = None,  # noqa: UP045
    store: StoreOpt = None,
) -> None:
    """Measure the current setup and judge it against the baseline.

    Throughput, acceptance and correctness are judged each on its own. Exit 0 pass,
    1 regression, 2 error, 3 inconclusive."""
    from autotune.cli import _load, _log_root, check_drafter_files, check_writable, user_errors

    code = 0
    with user_errors():
        from autotune.embedded import resolve_files, resolve_setup_files
        from autotune.errors import SpecError
        from autotune.gate import report as render
        from autotune.gate.run import check as run_check
        from autotune.gate.run import load_baseline
        from autotune.launcher import server_binary_path
        from autotune.space import SpecConfig
        from autotune.store.session import open_store
        from autotune.workload import load_workload

        spec, _ = _load(spec_path, {"store": store})
        if binary_a is not None and not ab:
            raise SpecError("--binary-a needs --ab (it names the baseline side's server)")
        if binary_a is not None and not Path(binary_a).is_file():
            raise SpecError(f"--binary-a {binary_a}: not found; give the path of a server binary")
        for path, option in ((json_out, "--json"), (junit_out, "--junit"),
                             (markdown_out, "--markdown")):
            if path is not None:
                check_writable(path, option)
        baseline = load_baseline(baseline_path)
        workload = load_workload(spec.workload.files, max_tokens=spec.workload.max_tokens)
        spec = resolve_files(spec)
        server_binary_path(spec.server.binary)  # before the database is created
        results = open_store(spec.store.path)
        params = dict(spec.gate.setup) if spec.gate.setup else dict(baseline["setup"])
        setup = SpecConfig.from_params(resolve_setup_files(spec, params))
        check_drafter_files(spec, (setup.drafter,) if setup.drafter else ())
        result = run_check(spec, results, workload, baseline, setup, ab=ab, binary_a=binary_a,
                           allow_mismatch=allow_mismatch, echo=typer.echo,
                           log_dir=_log_root(spec) / "gate")
        typer.echo("")
        typer.echo(render.table(result))
        if json_out:
            json_out.write_text(render.to_json(result) + "\n")
        if junit_out:
            junit_out.write_text(render.junit(result))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        for target in (markdown_out, Path(summary) if summary else None):
            if target is not None:
                with target.open("a", encoding="utf-8") as handle:
                    handle.write(render.markdown(result))
        code = result.exit_code
    raise typer.Exit(code=code)
