"""The benchmark's shapes and knobs: heads, head size, the cases, rounds, SAM 2's sizes, the sweep's angle sources.

The other modules read the knobs a run can change (``ROUNDS``, ``FINAL_ROUNDS``, ``MAX_OFFSET``, ``SAM_*``,
``shapes``) as ``_config.NAME`` at call time, so that the tests can run the whole benchmark at small sizes by
setting them here; the fixed shapes they import by name (as ``sam_inputs``' defaults do the SAM sizes: the SAM
case passes its sizes explicitly).
"""

from __future__ import annotations

import os

HQ, HK, D = 32, 8, 128
PREFILL_T = (1024, 4096, 16384)
DECODE_B, MAX_OFFSET = 64, 1_000_000
ROUNDS = int(os.environ.get("ROPEBOOK_BENCH_ROUNDS", "3"))  # rounds over all contenders; `us` is their median


def shapes(quick: bool):
    """(name, B, T) of every case."""
    cases = [(f"prefill T={T}", 1, T) for T in PREFILL_T] + [(f"decode B={DECODE_B}", DECODE_B, 1)]
    return cases[:1] + cases[-1:] if quick else cases


def moved_bytes(B: int, T: int, itemsize: int = 2) -> int:
    """Bytes of q and k read once plus written once: the floor of any RoPE."""
    return 2 * B * T * (HQ + HK) * D * itemsize


OPERATOR_ROW = "torch.ops.ropebook.rope (compiled)"


# SAM 2's memory cross-attention at its default sizes: the current frame's 64 × 64 patches, one head of 256 features,
# attending to 7 frames of memory (num_maskmem) and 16 object pointers of 4 tokens each (max_object_pointers_in_encoder)
SAM_SIDE, SAM_D, SAM_FRAMES, SAM_POINTERS = 64, 256, 7, 16 * 4


SOURCES = ("kernel", "table", "quadrant", "cos_sin")
"""Where the sweep's kernel gets cos and sin: computed (math library), the cache's table, computed with
``rope_triton.SINCOS="quadrant"``, or ``rope_qk_cos_sin`` reading float32 ``(B, T, r/2)`` values that the
caller formed for its positions (Liger's and Hugging Face's convention: no position lookup in the kernel)."""


FINAL_ROUNDS = int(os.environ.get("ROPEBOOK_SWEEP_ROUNDS", "5"))  # interleaved rounds of the finals
