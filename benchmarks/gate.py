"""How often the CI gate is right, on the real llama-server and model (the embedded default):
an unchanged setup checked against its own baseline must pass (a false alarm is a red build
for nothing), and real slowdowns must be flagged. Prints a table, the false-alarm rate and the
run time of one check.

    python3 benchmarks/gate.py                 # 20 unchanged checks, 5 of each slowdown
    python3 benchmarks/gate.py --unchanged 4 --slowdowns 1   # a quick look

Each check is `autotune gate check` as a CI job would run it (a subprocess; exit code read).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w

VERDICT = {0: "pass", 1: "regression", 3: "inconclusive"}
PINNED = {"method": "ngram-mod", "draft_max": 16}
DRAFTED = {"method": "draft-simple", "draft_max": 4, "p_min": 0.0, "drafter": "embedded:Q4_0"}
CASES: dict[str, dict[str, Any]] = {
    # name: (setup recorded, setup checked, extra server args at check time, expected)
    "unchanged": {"recorded": PINNED, "checked": PINNED, "args": [], "expect": "pass"},
    "drafter as large as its verifier": {
        "recorded": PINNED, "args": [], "expect": "regression",
        "checked": {"method": "draft-simple", "draft_max": 4, "p_min": 0.0,
                    "drafter": "embedded:gemma3-270m"}},
    "worse KV cache (q4_0, flash attention on)": {
        "recorded": PINNED, "args": [], "expect": "regression",
        "checked": {**PINNED, "cache_type_k": "q4_0", "cache_type_v": "q4_0",
                    "flash_attn": "on"}},
    "lower acceptance (--spec-synth-rates)": {
        "recorded": DRAFTED, "checked": DRAFTED, "expect": "regression",
        "args": ["--spec-synth-rates", "0.3,0.2,0.1,0.1"]},
}


def write_spec(folder: Path, name: str, setup: dict[str, Any], args: list[str]) -> Path:
    spec = {
        "name": "gate-benchmark",
        "server": {"model": "embedded:gemma3-270m", "ctx_size": 2048, "threads": 2,
                   "extra_args": args},
        "workload": {"files": ["embedded:mixed"], "requests": 6, "warmup_requests": 1},
        "gate": {"setup": setup},
        "store": {"path": str(folder / "gate.db")},
    }
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


def autotune(*args: str) -> tuple[int, float, str]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "autotune", *args],  # noqa: S603
                            capture_output=True, text=True, check=False)
    return result.returncode, time.monotonic() - started, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unchanged", type=int, default=20)
    parser.add_argument("--slowdowns", type=int, default=5)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="autotune-gate-bench-"))
    baselines: dict[str, Path] = {}
    rows: list[tuple[str, str, list[str], list[float], list[str]]] = []
    for case, plan in CASES.items():
        runs = options.unchanged if case == "unchanged" else options.slowdowns
        key = json.dumps(plan["recorded"], sort_keys=True)
        if key not in baselines:
            spec = write_spec(folder, f"record-{len(baselines)}", plan["recorded"], [])
            out = folder / f"baseline-{len(baselines)}.json"
            code, seconds, text = autotune("gate", "record", str(spec), "--out", str(out))
            if code != 0:
                raise SystemExit(f"gate record failed ({code}):\n{text}")
            print(f"recorded {plan['recorded']} in {seconds:.0f} s", flush=True)
            baselines[key] = out
        spec = write_spec(folder, f"check-{len(rows)}", plan["checked"], plan["args"])
        outcomes: list[str] = []
        times: list[float] = []
        red_signals: list[str] = []
        for run in range(runs):
            report = folder / f"report-{len(rows)}-{run}.json"
            code, seconds, text = autotune("gate", "check", str(baselines[key]), str(spec),
                                           "--json", str(report))
            if code not in VERDICT:
                raise SystemExit(f"gate check failed ({code}):\n{text}")
            outcomes.append(VERDICT[code])
            times.append(seconds)
            signals = {s["name"]: s["verdict"] for s in json.loads(report.read_text())["signals"]}
            red_signals += [name for name, verdict in signals.items() if verdict == "regression"]
            print(f"  {case} #{run + 1}: {VERDICT[code]} in {seconds:.0f} s {signals}", flush=True)
        rows.append((case, plan["expect"], outcomes, times, red_signals))
    print()
    print(f"{'case':<44} {'runs':>4} {'pass':>4} {'red':>4} {'inconc':>6} {'right':>6} "
          f"{'median s':>8}  red signals (count)")
    for case, expect, outcomes, times, red_signals in rows:
        right = sum(o == expect for o in outcomes)
        named = ", ".join(f"{n} {red_signals.count(n)}" for n in dict.fromkeys(red_signals))
        print(f"{case:<44} {len(outcomes):>4} {outcomes.count('pass'):>4} "
              f"{outcomes.count('regression'):>4} {outcomes.count('inconclusive'):>6} "
              f"{right:>3}/{len(outcomes):<2} {statistics.median(times):>8.0f}  {named or '-'}")
    unchanged = rows[0][2]
    print(f"\nunchanged setup: passed {unchanged.count('pass')}/{len(unchanged)}; false alarms "
          f"(red) {unchanged.count('regression')}/{len(unchanged)} = "
          f"{unchanged.count('regression') / len(unchanged):.0%}; inconclusive "
          f"{unchanged.count('inconclusive')}/{len(unchanged)}")
    print(f"one check: median {statistics.median(rows[0][3]):.0f} s "
          f"(max {max(rows[0][3]):.0f} s) on this machine")


if __name__ == "__main__":
    main()
