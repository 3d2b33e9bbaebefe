"""SIMULATION: the simulated server's command line, which speaks llama-server's flags (each
n-gram method its own length flag) and refuses what llama-server refuses, in its words."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autotune.sim.model import Landscape, fails_to_start
from autotune.sim.presets import PRESETS
from autotune.space import KV_TYPES, METHODS, SpecConfig, drafts, kv_is_quantized, uses_drafter


def build_parser(banner: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autotune-sim-server",
        description=f"{banner} of a llama-server on a GPU-scale landscape (autotune.sim); "
                    "never a real server.",
    )
    parser.add_argument("--sim-preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--sim-speedup", type=float, default=1.0,
                        help="divide every wait by this (measured tokens/s scale with it)")
    parser.add_argument("--sim-seed", type=int, default=None)
    parser.add_argument("-m", "--model", default="simulated.gguf")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-np", "--parallel", type=int, default=1)
    parser.add_argument("-ctk", "--cache-type-k", default="f16", choices=KV_TYPES)
    parser.add_argument("-ctv", "--cache-type-v", default="f16", choices=KV_TYPES)
    parser.add_argument("-fa", "--flash-attn", default="auto", choices=("on", "off", "auto"))
    parser.add_argument("--spec-type", default="none", choices=METHODS)
    parser.add_argument("--spec-draft-n-max", "--draft-max", type=int, default=16)
    # Each n-gram method reads its own length flag, as llama-server does.
    parser.add_argument("--spec-ngram-mod-n-max", type=int, default=64)
    parser.add_argument("--spec-ngram-mod-n-min", type=int, default=48)
    for name in ("simple", "map-k", "map-k4v"):
        parser.add_argument(f"--spec-ngram-{name}-size-m", type=int, default=48)
    parser.add_argument("--spec-draft-p-min", "--draft-p-min", type=float, default=0.75)
    parser.add_argument("--spec-draft-n-min", "--draft-min", type=int, default=None)
    parser.add_argument("-md", "--spec-draft-model", "--model-draft", default=None)
    parser.add_argument("--metrics", action="store_true")
    return parser


def config_from(args: argparse.Namespace, landscape: Landscape) -> SpecConfig:
    """The setup the flags describe, or ``SystemExit(1)`` with llama-server's own words."""
    flash = args.flash_attn
    if kv_is_quantized(args.cache_type_v) and flash != "on":
        _fail("quantized V cache requires flash_attn to be enabled")
    method = args.spec_type
    drafter = None
    if uses_drafter(method):
        if args.spec_draft_model is None:
            _fail(f"speculative type '{method}' requires a draft model (--spec-draft-model)")
        drafter = Path(args.spec_draft_model).name
        if drafter not in landscape.drafters:
            _fail(f"failed to load draft model, '{args.spec_draft_model}' (this simulated "
                  f"landscape has: {', '.join(sorted(landscape.drafters))})")
    lengths = {"ngram-mod": args.spec_ngram_mod_n_max,
               "ngram-simple": args.spec_ngram_simple_size_m,
               "ngram-map-k": args.spec_ngram_map_k_size_m,
               "ngram-map-k4v": args.spec_ngram_map_k4v_size_m}
    config = SpecConfig(
        method,
        lengths.get(method, args.spec_draft_n_max) if drafts(method) else None,
        args.spec_draft_p_min if uses_drafter(method) else None,
        drafter, args.cache_type_k, args.cache_type_v, flash,
        draft_min=(min(args.spec_draft_n_min, lengths.get(method, args.spec_draft_n_max))
                   if uses_drafter(method) and args.spec_draft_n_min is not None else None),
    )
    if fails_to_start(landscape, config):
        _fail(f"failed to create the draft context for '{args.spec_draft_model}': out of "
              f"memory at draft-max {config.draft_max} (SIMULATION)")
    return config


def _fail(message: str) -> None:
    print(f"main: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
