"""Argument and option types shared by every command module (cli, gate, drafters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

SpecArg = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional here
    typer.Argument(help="Tune spec (TOML). Default: the embedded Gemma 3 270M llama-server."),
]
StoreOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--store", help="Results database (SQLite path or SQLAlchemy URL).",
                 envvar="AUTOTUNE_STORE"),
]
