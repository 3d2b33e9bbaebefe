"""SIMULATION presets: six landscapes calibrated from published figures (sources beside each),
and two stress landscapes that break spec-model's assumptions on purpose.
Numbers are single public reports; treat the landscapes as plausible shapes, not predictions."""

from __future__ import annotations

from autotune.sim.model import DrafterModel, Landscape

# Conditional acceptance per position derived from the 31B MTP card's accepted/drafted ratios
# at draft-max 1..4 (89/83/74/64%; ik_llama.cpp PR #1744 as quoted in seeds/000): solving
# ratio(n) = sum_{i<=n} prod_{j<=i} a_j / n gives a = 0.89, 0.865, 0.727, 0.607; beyond 4 the
# decay continues (DSpark: 7th token < 10% unconditional, vLLM PR #296).
MTP_31B = (0.89, 0.865, 0.727, 0.607, 0.55, 0.5, 0.45, 0.4)

PRESETS: dict[str, Landscape] = {
    "dc-gpu-31b-mtp": Landscape(
        name="dc-gpu-31b-mtp",
        description="data-center GPU, Gemma-4-31B Q8_0 + MTP drafter",
        # ~21 t/s alone; 35/44/49/49 at draft-max 1..4 (PR #1744 via seeds/000). With s = 0.05
        # and D/V1 = 0.084 the model gives 35.0/44.2/48.3/49.6.
        baseline_tokens_per_second=21.0, verifier_slope=0.05, acceptance=MTP_31B,
        drafters={"mtp-q8_0.gguf": DrafterModel(0.084, 1.0),
                  # Q4 MTP ran faster with no lower acceptance (llama.cpp #24266)
                  "mtp-q4_k_m.gguf": DrafterModel(0.060, 0.99)},
        kv_speed={"f16": 1.0, "q8_0": 1.01},  # +-3% at short context (qvac PR #1276)
        flash_attn_speed=1.04, launch_seconds=90.0, noise=0.03,
        citations=("ik_llama.cpp PR #1744", "llama.cpp #24266", "llama.cpp PR #5625"),
    ),
    "laptop-gpu-small": Landscape(
        name="laptop-gpu-small",
        description="laptop GPU (4060, 8 GiB), Gemma-4-E4B Q4_K_M + MTP drafters",
        # Q4_K_M drafter beat Q8_0 by ~13% at draft-max 3 (seeds/000, seeds/001): the drafter
        # step is expensive on a laptop GPU, so its size matters more than its acceptance.
        baseline_tokens_per_second=38.0, verifier_slope=0.12, acceptance=MTP_31B,
        drafters={"mtp-q8_0.gguf": DrafterModel(0.26, 1.0),
                  "mtp-q4_k_m.gguf": DrafterModel(0.15, 0.97),
                  "mtp-q3_k_l.gguf": DrafterModel(0.12, 0.80)},  # Q3 "could invert" (seeds/000)
        kv_speed={"f16": 1.0, "q8_0": 0.99}, flash_attn_speed=1.02,
        launch_seconds=25.0, noise=0.06,
        citations=("seeds/000 empirical note", "seeds/001"),
    ),
    "moe-hybrid": Landscape(
        name="moe-hybrid",
        description="MoE 30B-A3B, the 2nd verified token ~60% of a step, later ones ~30%",
        # w=1/2/3/5/8 cost 8.47/13.49/15.64/20.67/28.13 ms (vllm-mlx #699), i.e. V(n)/V1 =
        # 1.59/1.85/2.44/3.32: s = 0.29 with a jump of 0.30 gives 1.59/1.88/2.46/3.33.
        # 63 -> 68 t/s (+8%) at the best draft-max, 1 (llama.cpp #24266): a_1 = 0.8 with
        # D/V1 = 0.08 gives 67.9; a_2 must stay below ~0.5 for draft-max 2 not to win.
        baseline_tokens_per_second=63.0, verifier_slope=0.29, verifier_jump=0.30,
        acceptance=(0.8, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15),
        drafters={"mtp-q8_0.gguf": DrafterModel(0.08, 1.0),
                  "mtp-q4_k_m.gguf": DrafterModel(0.06, 0.98)},
        ngram_acceptance=(0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.06),
        kv_speed={"f16": 1.0, "q8_0": 0.98}, launch_seconds=60.0, noise=0.04,
        citations=("waybarrios/vllm-mlx #699", "llama.cpp #24266"),
    ),
    "cpu-only": Landscape(
        name="cpu-only",
        description="CPU-only host, small dense model (compute-bound verify)",
        # Small dense CPU: s -> ~1; a 0.6B CPU drafter at c ~0.34 loses (Crow #181); this
        # project's own 2-core runs: ngram-mod x1.4-1.7, same-family drafters x0.5-0.75.
        # The 270M model spends most of a token on its 262k-word output layer, which a
        # same-family drafter pays too (drafter cost ~ a verifier step), while verifying a few
        # tokens at once is cheap relative to it (s ~ 0.25 fits ngram-mod's measured x1.5-1.7).
        baseline_tokens_per_second=47.0, verifier_slope=0.25,
        acceptance=(0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5),
        drafters={"draft-q8_0.gguf": DrafterModel(0.85, 1.0),
                  "draft-q4_0.gguf": DrafterModel(0.65, 0.96)},
        ngram_acceptance=(0.78, 0.76, 0.74, 0.72, 0.7, 0.68, 0.66, 0.64),
        ngram_cost_ratio=0.02,
        kv_speed={"f16": 1.0, "q8_0": 1.02}, flash_attn_speed=1.03,
        launch_seconds=3.0, noise=0.08,
        citations=("nibor1896/Crow #181", "shared/reference/llama-server.md"),
    ),
    "high-concurrency": Landscape(
        name="high-concurrency",
        description="serving at concurrency 64: batches are compute-bound, gains erode",
        # vLLM blog 2024-10-17: 1.5x at QPS 1, a 1.4x slowdown at high QPS with a draft model;
        # DSpark K=7 falls from 2.54x (c4) to 1.64x (c64) (vLLM PR #52362).
        baseline_tokens_per_second=1400.0, verifier_slope=0.05, acceptance=MTP_31B,
        drafters={"eagle3.gguf": DrafterModel(0.05, 1.0)},
        concurrency=64, concurrency_slope=0.006,
        kv_speed={"f16": 1.0, "q8_0": 1.04}, launch_seconds=120.0, noise=0.03,
        citations=("vLLM blog 2024-10-17", "vLLM PR #52362"),
    ),
    "no-drafting-best": Landscape(
        name="no-drafting-best",
        description="prose/JSON workload where drafting does not pay",
        # JSON ~8% acceptance, prose ~31%, no gain (gemmaclaw PR #133); MTP n=2 -2.2% on
        # narrative, n=3-4 regress (club-3090 #814).
        baseline_tokens_per_second=30.0, verifier_slope=0.1,
        acceptance=(0.25, 0.2, 0.18, 0.15, 0.12, 0.1, 0.08, 0.06),
        drafters={"mtp-q8_0.gguf": DrafterModel(0.20, 1.0),
                  "mtp-q4_k_m.gguf": DrafterModel(0.16, 0.97)},
        ngram_acceptance=(0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02, 0.01),
        kv_speed={"f16": 1.0, "q8_0": 1.0}, launch_seconds=60.0, noise=0.04,
        citations=("gemmaclaw PR #133", "noonghunna/club-3090 #814"),
    ),
    # Stress landscapes (not calibrated to a report): each breaks one assumption that
    # spec-model's physics makes, so its benchmark edge is tested where it does not hold.
    "mismatch-kv-drafting": Landscape(
        name="mismatch-kv-drafting",
        description="STRESS: dc-gpu-31b-mtp where a q8_0 cache is faster alone but costs "
                    "more per verified token (the KV effect depends on the drafting setup)",
        baseline_tokens_per_second=21.0, verifier_slope=0.05, acceptance=MTP_31B,
        drafters={"mtp-q8_0.gguf": DrafterModel(0.084, 1.0),
                  "mtp-q4_k_m.gguf": DrafterModel(0.060, 0.99)},
        kv_speed={"f16": 1.0, "q8_0": 1.04}, kv_slope={"q8_0": 0.03},
        flash_attn_speed=1.04, launch_seconds=90.0, noise=0.03,
        citations=("stress variant of dc-gpu-31b-mtp",),
    ),
    "mismatch-overconfident": Landscape(
        name="mismatch-overconfident",
        description="STRESS: laptop-gpu-small with drafters 1.4x overconfident (p-min passes "
                    "weak tokens) and drafter setups above draft-max 6 failing to start",
        baseline_tokens_per_second=38.0, verifier_slope=0.12, acceptance=MTP_31B,
        drafters={"mtp-q8_0.gguf": DrafterModel(0.26, 1.0),
                  "mtp-q4_k_m.gguf": DrafterModel(0.15, 0.97),
                  "mtp-q3_k_l.gguf": DrafterModel(0.12, 0.80)},
        kv_speed={"f16": 1.0, "q8_0": 0.99}, flash_attn_speed=1.02,
        launch_seconds=25.0, noise=0.06, confidence_bias=1.4, drafter_fails_above=6,
        citations=("stress variant of laptop-gpu-small",),
    ),
}
