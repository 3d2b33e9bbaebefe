"""Trials without restarts: the same study on ik_llama.cpp (per-request draft parameters, one
launch per drafter) and on mainline llama.cpp (every setup a launch), real servers, real model.
Prints the launches and wall time of each search and each study's decision.

    python3 benchmarks/reuse.py              # draft-simple x 2 drafters x draft-max x p-min x n-min
    python3 benchmarks/reuse.py --quick      # 2 draft-max values instead of 4

Three runs: ik with reuse (the default), ik with `search.reuse_launches = false` (the same
server relaunched per setup: does keeping a server change the decision?), and mainline.
Needs `autotune build-ik` once. A grid search, so every run measures the same setups.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w

from autotune.embedded import embedded_drafter
from autotune.ik_build import server_binary as ik_server_binary


def spec(kind: str, binary: str, reuse: bool, store: Path, quick: bool) -> dict[str, Any]:
    drafters = [embedded_drafter("Q8_0"), embedded_drafter("Q4_0")]
    high = 4 if quick else 8
    grid = 1 + len(drafters) * (high // 2) * 2 * 2  # draft-max x p-min x n-min
    return {
        "name": f"{kind}-{'reuse' if reuse else 'relaunch'}",
        "server": {"kind": kind, "binary": binary, "ctx_size": 1024, "threads": 2},
        "space": {"methods": ["none", "draft-simple"], "drafters": drafters,
                  "draft_max": {"low": 2, "high": high, "step": 2},
                  "p_min": {"low": 0.0, "high": 0.5, "step": 0.5},
                  "draft_min": {"low": 0, "high": 2, "step": 2}},
        "workload": {"requests": 3, "quality_prompts": 0},
        "search": {"strategy": "grid", "trials": grid, "reuse_launches": reuse},
        "finish": {"finalists": 2, "rounds": 4, "max_rounds": 4, "requests_per_round": 2},
        "store": {"path": str(store)},
    }


def run(label: str, data: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = folder / f"{data['name']}.toml"
    path.write_text(tomli_w.dumps(data))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "autotune", "tune", str(path)],
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    out = done.stdout
    launches = re.search(r"(\d+) launches in all", out)
    trials = len(re.findall(r"^\[\s*\d+/\d+\]", out, flags=re.M))
    decided = re.search(r"^recommended: (.*)$", out, flags=re.M)
    return {
        "label": label, "exit": done.returncode, "seconds": seconds, "trials": trials,
        "launches": int(launches.group(1)) if launches else trials,
        "decision": decided.group(1) if decided else f"(none; exit {done.returncode})",
        "probe": next((line for line in out.splitlines() if "per-request draft" in line), ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from autotune.embedded import server_binary

    with tempfile.TemporaryDirectory(prefix="autotune-reuse-") as work:
        folder = Path(work)
        rows = [
            run("ik_llama.cpp, per-request knobs", spec("ik_llama.cpp", ik_server_binary(), True,
                                                        folder / "a.db", args.quick), folder),
            run("ik_llama.cpp, relaunch each", spec("ik_llama.cpp", ik_server_binary(), False,
                                                    folder / "b.db", args.quick), folder),
            run("mainline llama.cpp", spec("llama.cpp", server_binary(), True,
                                           folder / "c.db", args.quick), folder),
        ]
    print(f"{'run':34} {'trials':>6} {'launches':>8} {'study s':>8}  decision")
    for row in rows:
        print(f"{row['label']:34} {row['trials']:>6} {row['launches']:>8} "
              f"{row['seconds']:>8.0f}  {row['decision']}")
    for row in rows:
        if row["probe"]:
            print(f"{row['label']}: {row['probe'].strip()}")
    ik, mainline = rows[0], rows[2]
    print(f"search launches: ik {ik['launches']} vs mainline {mainline['launches']} "
          f"({mainline['launches'] / max(ik['launches'], 1):.1f}x fewer)")


if __name__ == "__main__":
    main()
