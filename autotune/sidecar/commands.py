"""`autotune sidecar`: a thin command over ``autotune.sidecar.loop``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autotune.cli import _load, _log_root, user_errors
from autotune.cli_options import SpecArg, StoreOpt


def sidecar(
    spec_path: SpecArg = None,
    server: Annotated[Optional[str], typer.Option("--server", help="The live server's URL, e.g. http://127.0.0.1:8080 (default: \\[sidecar] server_url).")] = None,  # noqa: UP045
    listen: Annotated[Optional[str], typer.Option("--listen", help="HOST:PORT for /metrics, /healthz, /recommendation and POST /retune (default 127.0.0.1:9464).")] = None,  # noqa: UP045
    interval: Annotated[Optional[float], typer.Option("--interval", min=0.1, help="Seconds per window (default: \\[sidecar] interval_s).")] = None,  # noqa: UP045
    name: Annotated[Optional[str], typer.Option(help="Name prefix of retune studies (default: from the spec).")] = None,  # noqa: UP045
    store: StoreOpt = None,
) -> None:
    """Watch a live server, export its figures, detect drift and retune on a canary.

    Exports its speculative-decoding figures, advises a draft-max, and retunes on drift, a
    schedule, or POST /retune. Runs until SIGTERM or Ctrl-C."""
    with user_errors():
        from autotune.embedded import default_spec_path
        from autotune.errors import SpecError
        from autotune.launcher import host_family
        from autotune.sidecar.loop import Sidecar, Target
        from autotune.store.session import open_store

        spec, base_name = _load(spec_path, {"store": store, "name": name})
        updates: dict[str, object] = {}
        if listen is not None:
            host, _, port = listen.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise SpecError(f"--listen {listen!r} is not HOST:PORT; give e.g. "
                                "127.0.0.1:9464")
            updates.update(listen_host=host.strip("[]"), listen_port=int(port))
        if interval is not None:
            updates["interval_s"] = interval
        settings = spec.sidecar.model_copy(update=updates)
        spec = spec.model_copy(update={"sidecar": settings})
        url = server or settings.server_url
        if not url:
            raise SpecError("no live server to watch; pass --server http://HOST:PORT or set "
                            "[sidecar] server_url")
        target = Target.parse(url)
        host_family(settings.listen_host)
        _warn_if_no_canary_binary(spec.server.binary)
        results = open_store(spec.store.path)
        runner = Sidecar(spec, spec_path=spec_path or default_spec_path(), target=target,
                         store=results, store_location=spec.store.path, name=base_name,
                         log_dir=_log_root(spec) / f"{base_name}-sidecar", echo=typer.echo)
        try:
            runner.run()
        except OSError as error:  # the listen address is taken or not ours
            raise SpecError(f"cannot listen on {settings.listen_host}:{settings.listen_port}: "
                            f"{error.strerror or error}; choose another with --listen") from None


def _warn_if_no_canary_binary(binary: str) -> None:
    """Watching and exporting need no server binary, but a retune starts a canary from
    [server]: a wrong path is said at start, not hours later when drift first calls a retune."""
    from autotune.embedded import check_named_binary
    from autotune.errors import AutotuneError

    try:
        check_named_binary(binary)
    except AutotuneError as error:
        typer.echo(f"sidecar: warning: retunes will fail: {error}", err=True)
