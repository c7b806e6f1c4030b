"""ropebook.rope and ropebook.rotary: oracles, identities, precision, compile, autograd, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ropebook as rb
from ropebook import reference, scaling

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))]
LAYOUTS = ["half", "interleaved"]

# (shape, base, rotary_dim, layout, scaling) checked against the numpy reference
REFERENCE_CASES = [
    ((5, 8), 10000.0, None, "half", None),
    ((5, 8), 10000.0, None, "interleaved", None),
    ((2, 3, 7, 16), 500.0, None, "half", None),
    ((2, 3, 7, 16), 500.0, None, "interleaved", None),
    ((2, 2, 6, 12), 10000.0, 4, "half", None),  # GPT-NeoX partial rotary
    ((2, 2, 6, 12), 10000.0, 8, "interleaved", None),
    ((1, 2, 9, 16), 10000.0, None, "half", scaling.Linear(4.0)),
    ((1, 2, 9, 16), 10000.0, None, "interleaved", scaling.YaRN(8.0, original_max_positions=64)),
    ((1, 2, 9, 16), 10000.0, None, "half", scaling.LongRoPE([1.0] * 8, [1.5] * 8, 4, max_positions=16)),
    ((1, 2, 9, 16), 10000.0, None, "half", scaling.DynamicNTK(2.0, original_max_positions=4)),
]

# Bad input: (call, the words the message must contain: argument, expected, actual)
X = torch.zeros(2, 4, 16, 8)
BAD_INPUTS = {
    "odd head_dim": (lambda: rb.apply_rope(torch.zeros(2, 4, 16, 63)), ["head_dim", "even", "(2, 4, 16, 63)"]),
    "odd rotary_dim": (lambda: rb.apply_rope(X, rotary_dim=3), ["rotary_dim", "even", "rotary_dim=3"]),
    "rotary_dim > D": (lambda: rb.apply_rope(X, rotary_dim=10), ["rotary_dim", "at most head_dim=8", "rotary_dim=10"]),
    "positions shape": (lambda: rb.apply_rope(X, torch.arange(5)), ["positions", "x.shape[:-1]=(2, 4, 16)", "positions.shape=(5,)"]),
    "NaN positions": (lambda: rb.apply_rope(X, torch.full((16,), math.nan)), ["positions", "finite", "nan"]),
    "inf positions": (lambda: rb.apply_rope(X, torch.full((16,), math.inf)), ["positions", "finite", "inf"]),
    "unknown layout": (lambda: rb.apply_rope(X, layout="neox"), ["layout", "('half', 'interleaved')", "'neox'"]),
    "non-positive base": (lambda: rb.apply_rope(X, base=0.0), ["base", "finite number > 1", "base=0.0"]),
    "negative base": (lambda: rb.rope_frequencies(8, base=-1.0), ["base", "finite number > 1", "base=-1.0"]),
    # b = 1: every θ_i = 1; b < 1: the frequencies rise with i (both ran silently once)
    "base one": (lambda: rb.apply_rope(X, base=1.0), ["apply_rope: base must be a finite number > 1", "base=1.0"]),
    "base below one": (lambda: rb.RotaryEmbedding(8, base=0.5), ["RotaryEmbedding: base must be a finite number > 1", "base=0.5"]),
    # positions that have been rounded before they arrive: bf16 holds integers exactly only up to 256
    "bf16 positions": (lambda: rb.apply_rope(torch.zeros(300, 8), torch.arange(300).bfloat16()),
                       ["apply_rope: positions must be integers or float32/float64", "positions.dtype=torch.bfloat16",
                        "only up to 256"]),
    "fp16 positions, module": (lambda: rb.RotaryEmbedding(8)(torch.zeros(1, 2, 3, 8), torch.zeros(1, 1, 3, 8),
                                                             torch.arange(3).half()),
                               ["RotaryEmbedding: positions", "positions.dtype=torch.float16", "only up to 2048"]),
    "float32 positions past 2^24": (lambda: rb.rope_cos_sin(torch.tensor([2.0**24 + 2]), 8),
                                    ["rope_cos_sin: float32 positions must be at most 2**24", "got 16777218",
                                     "int64 or float64"]),
    # Hugging Face's position_ids (B, T) for x (B, H, T, D): the hint says how to add the head axis
    "positions (B, T)": (lambda: rb.apply_rope(X, torch.arange(16).expand(2, 16)),
                         ["positions must broadcast to x.shape[:-1]=(2, 4, 16)", "positions.shape=(2, 16)",
                          "one row of positions per sequence (B, T) pass positions[:, None, :]"]),
    "positions (B, T), 5-d x": (lambda: rb.apply_rope(torch.zeros(2, 3, 4, 16, 8), torch.arange(16).expand(2, 16)),
                                ["positions.shape=(2, 16)", "positions[:, None, None, :]"]),
    "weights: W_k with the query heads": (
        lambda: rb.interleaved_to_half_weights(torch.zeros(2 * 8, 32), 4, head_dim=8),
        ["n_heads * head_dim = 4 * 8 = 32", "w.shape=(16, 32)", "key/value heads"]),
    "weights: head_dim odd": (lambda: rb.interleaved_to_half_weights(torch.zeros(12, 4), 4, head_dim=3),
                              ["head_dim must be a positive even integer", "head_dim=3"]),
    "dim as a 0-d tensor": (lambda: rb.rope_frequencies(torch.tensor(8)),
                               ["dim must be a positive even integer", "dim=tensor(8) (a Tensor, not a Python or numpy number)"]),
    "factor below 1": (lambda: scaling.Linear(0.5), ["factor", ">= 1", "factor=0.5"]),
    "LongRoPE length": (
        lambda: rb.apply_rope(X, scaling=scaling.LongRoPE([1.0] * 3, [1.0] * 3, 8, factor=1.0)),
        ["short_factor", "dim // 2 = 4", "got 3"],
    ),
    "unknown backend": (lambda: rb.apply_rope(X, backend="cuda"), ["backend", "('auto', 'torch', 'triton')", "'cuda'"]),
    # offset: once added unchecked (a (3, 1) offset on (4, 8) gave uninitialised memory; NaN gave all NaN)
    "offset shape": (lambda: rb.apply_rope(torch.zeros(4, 8), offset=torch.zeros(3, 1, dtype=torch.long)),
                     ["offset", "x.shape[:-1]=(4,)", "offset.shape=(3, 1)"]),
    "offset per sequence": (lambda: rb.apply_rope(X, offset=torch.tensor([3, 5])),
                            ["offset", "x.shape[:-1]=(2, 4, 16)", "offset.shape=(2,)", "offset[:, None, None]"]),
    # B == T: a (B,) offset broadcast over the tokens instead (RotaryEmbedding reads (B,) as one start per row)
    "offset per sequence, B == T": (lambda: rb.apply_rope(torch.zeros(3, 2, 3, 8), offset=torch.tensor([3, 5, 7])),
                                    ["offset.shape=(3,)", "ambiguous", "x.shape=(3, 2, 3, 8)", "offset[:, None, None]",
                                     "offset.view(1, 1, -1)"]),
    # B == H: Hugging Face's (B, T) position_ids broadcast as one row per head, silently wrong
    "positions (B, T), B == H": (lambda: rb.apply_rope(torch.zeros(3, 3, 5, 8), torch.arange(15).view(3, 5)),
                                 ["positions.shape=(3, 5)", "ambiguous", "x.shape=(3, 3, 5, 8)", "positions[:, None, :]",
                                  "positions[None]"]),
    "module: positions (B, T), B == H": (
        lambda: rb.RotaryEmbedding(8)(torch.zeros(2, 2, 5, 8), torch.zeros(2, 1, 5, 8), torch.arange(10).view(2, 5)),
        ["positions.shape=(2, 5)", "ambiguous", "x.shape=(2, 2, 5, 8)", "positions[:, None, :]"]),
    # an offset of (B, 1), position_ids[:, -1:] say, for B == H: one start per head, silently
    "offset (B, 1), B == H": (lambda: rb.apply_rope(torch.zeros(4, 4, 1, 8), offset=torch.tensor([[5], [17], [300], [9]])),
                              ["offset.shape=(4, 1)", "ambiguous", "x.shape=(4, 4, 1, 8)", "offset[:, None, :]"]),
    "module: offset (B, 1), B == H": (
        lambda: rb.RotaryEmbedding(8)(torch.zeros(2, 2, 5, 8), torch.zeros(2, 2, 5, 8), offset=torch.tensor([[5], [9]])),
        ["offset.shape=(2, 1)", "ambiguous", "offset[:, None, :]"]),
    "offset (B, 1), B != H": (lambda: rb.apply_rope(torch.zeros(3, 2, 1, 8), offset=torch.tensor([[5], [17], [300]])),
                              ["offset must broadcast", "offset.shape=(3, 1)", "offset[:, None, :]"]),
    "NaN offset": (lambda: rb.apply_rope(X, offset=math.nan), ["offset", "finite", "offset=nan"]),
    "NaN offset tensor": (lambda: rb.apply_rope(X, offset=torch.tensor(math.nan)), ["offset", "finite", "nan"]),
    "string offset": (lambda: rb.apply_rope(X, offset="3"), ["offset", "an int", "offset='3'"]),
    "bf16 frequencies": (lambda: rb.rope_frequencies(64, dtype=torch.bfloat16),
                         ["dtype", "torch.float32 or torch.float64", "torch.bfloat16"]),
    "scaling by name": (lambda: rb.apply_rope(X, scaling="linear"), ["scaling", "ropebook.scaling", "'linear'"]),
    "cos_sin NaN positions": (lambda: rb.rope_cos_sin(torch.tensor([0.0, math.nan]), 8), ["positions", "finite", "nan"]),
    "cos_sin bool positions": (lambda: rb.rope_cos_sin(torch.tensor([True]), 8), ["positions", "torch.bool"]),
    "module: offset per batch row": (
        lambda: rb.RotaryEmbedding(8)(torch.zeros(1, 2, 3, 8), torch.zeros(1, 1, 3, 8), offset=torch.tensor([4, 7])),
        ["offset", "B=1", "offset.shape=(2,)"]),
    "module: q and k tokens": (lambda: rb.RotaryEmbedding(8)(torch.zeros(1, 5, 4, 8), torch.zeros(1, 5, 1, 8)),
                               ["share B and T", "q.shape=(1, 5, 4, 8)", "k.shape=(1, 5, 1, 8)"]),
    "module: q and k as (B, T, H, D)": (
        lambda: rb.RotaryEmbedding(8)(torch.zeros(1, 5, 4, 8), torch.zeros(1, 5, 2, 8)),
        ["share B and T", "q.shape=(1, 5, 4, 8)", "look like (B, T, H, D)", "q.transpose(1, 2)"]),
    "module: q and k batch": (lambda: rb.RotaryEmbedding(8)(torch.zeros(2, 5, 4, 8), torch.zeros(1, 5, 4, 8)),
                              ["share B and T", "k.shape=(1, 5, 4, 8)"]),
    "weights: a scalar": (lambda: rb.interleaved_to_half_weights(torch.tensor(1.0), 1), ["w must be", "w.shape=()"]),
    "module: max_positions": (lambda: rb.RotaryEmbedding(8, max_positions=None), ["max_positions", "positive", "None"]),
}


@pytest.mark.parametrize("positions, offset", [
    (torch.arange(4, dtype=torch.int8) + 120, 100),         # int8 + 100 wrapped
    (torch.arange(4, dtype=torch.int32), 2**31),            # int32 + 2^31 wrapped
    (torch.arange(4, dtype=torch.float32) + 0.5, 2**24),    # float32: 2^24 + 0.5 rounds to 2^24
    (torch.arange(4, dtype=torch.float32), 2**25 + 1),      # float32: 2^25 + 1 rounds to 2^25
])
def test_offset_is_added_in_64_bits(positions, offset):
    """positions + offset once ran in the positions' dtype: wrapped or rounded, errors of 1.4 to 3.3.
    (float16/bfloat16 positions are refused outright: they have rounded before the offset is added.)"""
    x = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = positions.to(torch.float64 if positions.is_floating_point() else torch.int64) + offset
    torch.testing.assert_close(rb.apply_rope(x, positions, offset=offset), rb.apply_rope(x, exact), rtol=0, atol=0)
    q, k = x[None, None], x[None, None, :, :4].repeat(1, 1, 1, 2)
    got = rb.RotaryEmbedding(8)(q, k, positions, offset=offset)[0]
    torch.testing.assert_close(got, rb.apply_rope(q, exact), rtol=0, atol=1e-6)


def test_module_small_integer_positions_and_far_offsets():
    """int8 positions index the table (IndexError before); a far offset is computed, not a 2^40-row table."""
    rope = rb.RotaryEmbedding(8)
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 1, 3, 8)
    for positions in (torch.tensor([0, 1, 2], dtype=torch.int8), torch.tensor([0, 1, 2], dtype=torch.uint8)):
        torch.testing.assert_close(rope(q, k, positions)[0], rb.apply_rope(q), rtol=0, atol=1e-6)
    q1, _ = rope(q, k, offset=2**40)
    torch.testing.assert_close(q1, rb.apply_rope(q, offset=2**40), rtol=0, atol=1e-6)
    assert all(cos.shape[0] <= rb.RotaryEmbedding.TABLE_LIMIT for cos, _ in rope._cache.values())


def test_module_table_grows_by_doubling_and_computes_a_far_jump():
    """A decode step at position 10^6 once built a 2^20-row table (512 MB of cos and sin for a head of 128):
    a jump more than twice past the table is computed directly; steady growth still doubles the table."""
    rope = rb.RotaryEmbedding(8, max_positions=16)
    q, k = torch.randn(1, 2, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    rows = lambda: max(cos.shape[0] for cos, _ in rope._cache.values())  # noqa: E731
    rope(q, k, offset=3)
    assert rows() == 16
    for start, expected_rows in ((20, 32), (40, 64), (100, 128)):  # each within twice the table: it doubles
        got = rope(q, k, offset=start)[0]
        torch.testing.assert_close(got, rb.apply_rope(q, offset=start), rtol=0, atol=0)
        assert rows() == expected_rows
    far = rope(q, k, offset=10**6)[0]  # more than twice past 128 rows: computed, the table stays
    torch.testing.assert_close(far, rb.apply_rope(q, offset=10**6), rtol=0, atol=0)
    assert rows() == 128
    some = torch.randn(1, 2, 200, 8, dtype=torch.float64)  # 200 tokens up to 700: over a quarter of it, built
    torch.testing.assert_close(rope(some, some, offset=500)[0], rb.apply_rope(some, offset=500), rtol=0, atol=0)
    assert rows() == 1024
    few = torch.randn(1, 2, 200, 8, dtype=torch.float64)  # 200 tokens up to 4200: fewer than a quarter, computed
    torch.testing.assert_close(rope(few, few, offset=4000)[0], rb.apply_rope(few, offset=4000), rtol=0, atol=0)
    assert rows() == 1024
    long_q = torch.randn(1, 2, 3000, 8, dtype=torch.float64)  # a prefill of 3000 tokens: the table is built
    torch.testing.assert_close(rope(long_q, long_q)[0], rb.apply_rope(long_q), rtol=0, atol=0)
    assert rows() == 4096
    # a second dtype grows from the longest table on the device: a step at 5000 is within twice 4096
    torch.testing.assert_close(rope(q.float(), k.float(), offset=5000)[0], rb.apply_rope(q.float(), offset=5000),
                               rtol=0, atol=1e-6)
    assert rope._cache[(torch.device("cpu"), torch.float32, False)][0].shape[0] == 8192


def test_empty_inputs_with_a_length_dependent_rule():
    x = torch.zeros(1, 2, 0, 8)
    assert rb.apply_rope(x, scaling=scaling.DynamicNTK(2.0, original_max_positions=4)).shape == x.shape
    assert rb.RotaryEmbedding(8, scaling=scaling.DynamicNTK(2.0, original_max_positions=4)).cos_sin(
        torch.arange(0))[0].shape == (0, 4)


def meta_precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """Meta Llama's reference (llama/model.py), in float64."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].double() / dim))
    t = torch.arange(end, dtype=torch.float64)
    freqs = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(freqs), freqs)  # (T, d/2) complex128


def meta_apply_rotary_emb(xq: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """xq: (B, T, H, D), Meta's layout; pairs (2i, 2i + 1) viewed as complex numbers."""
    xq_ = torch.view_as_complex(xq.double().reshape(*xq.shape[:-1], -1, 2))
    freqs_cis = freqs_cis[None, :, None, :]
    return torch.view_as_real(xq_ * freqs_cis).flatten(3)


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("shape, base, rotary_dim, layout, rule", REFERENCE_CASES)
def test_matches_numpy_reference(shape, base, rotary_dim, layout, rule):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = reference.apply_rope_reference(x, base=base, layout=layout, rotary_dim=rotary_dim, scaling=rule)
    for fn in (rb.apply_rope, rb.apply_rope_complex):
        got = fn(x, base=base, layout=layout, rotary_dim=rotary_dim, scaling=rule)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dim", [8, 64, 128])
def test_interleaved_matches_meta_complex_reference(dim):
    B, T, H = 2, 300, 3
    xq = torch.randn(B, T, H, dim, dtype=torch.float64)
    expected = meta_apply_rotary_emb(xq, meta_precompute_freqs_cis(dim, T))  # (B, T, H, D)
    got = rb.apply_rope(xq.transpose(1, 2), layout="interleaved").transpose(1, 2)  # ours is (B, H, T, D)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    got32 = rb.apply_rope(xq.float().transpose(1, 2), layout="interleaved").transpose(1, 2)
    torch.testing.assert_close(got32, expected.float(), rtol=1e-5, atol=1e-5)


def test_frequencies_and_angles():
    inv = rb.rope_frequencies(8, base=100.0)
    np.testing.assert_allclose(inv.numpy(), [100.0 ** (-2 * i / 8) for i in range(4)], rtol=1e-15)
    angles = rb.rope.rope_angles(torch.tensor([[3]]), inv)
    assert angles.shape == (1, 1, 4) and angles.dtype == torch.float64
    torch.testing.assert_close(angles[0, 0], 3 * inv)


def per_sequence_of(x, positions):
    """Each sequence of x (B, H, T, D) rotated at its own row of positions (B, T), one call per sequence."""
    return torch.stack([rb.apply_rope(x[b], positions[b]) for b in range(x.shape[0])])


def test_default_positions_offset_and_float_positions():
    x = torch.randn(2, 3, 5, 8)
    torch.testing.assert_close(rb.apply_rope(x, offset=7), rb.apply_rope(x, torch.arange(7, 12)))
    torch.testing.assert_close(rb.apply_rope(x, torch.arange(5) * 0.5), rb.apply_rope(x, torch.arange(5) / 2.0))
    row_offsets = torch.tensor([0, 10]).view(2, 1, 1)  # (B, 1, 1): one start per batch row
    y = rb.apply_rope(x, offset=row_offsets)
    torch.testing.assert_close(y[1], rb.apply_rope(x[1], offset=10))
    # the two ways out the ambiguity message offers, for (B, T) positions with B == H
    sq = torch.randn(3, 3, 5, 8)
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11], [2, 4, 6, 8, 10]])
    per_sequence, per_head = rb.apply_rope(sq, pos[:, None, :]), rb.apply_rope(sq, pos[None])
    for i in range(3):
        torch.testing.assert_close(per_sequence[i], rb.apply_rope(sq[i], pos[i]))
        torch.testing.assert_close(per_head[:, i], rb.apply_rope(sq[:, i], pos[i]))
    # Hugging Face's usual position_ids, one row expanded over the batch (stride 0): either reading is the same
    shared = torch.arange(5)[None].expand(3, 5)
    torch.testing.assert_close(rb.apply_rope(sq, shared), per_sequence_of(sq, torch.arange(5).expand(3, 5)), rtol=0, atol=0)
    torch.testing.assert_close(rb.apply_rope(sq, offset=torch.tensor([[4]]).expand(3, 1)), rb.apply_rope(sq, offset=4))
    with pytest.raises(ValueError, match="ambiguous"):  # the same values, but not one row expanded: refused
        rb.apply_rope(sq, shared.contiguous())
    half = reference.apply_rope_reference(x, np.arange(5) * 0.5)
    np.testing.assert_allclose(rb.apply_rope(x, torch.arange(5) * 0.5).numpy(), half, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_keeps_shape_dtype_device(dtype, device):
    x = torch.randn(2, 3, 5, 8, device=device).to(dtype)
    for layout in LAYOUTS:
        for fn in (rb.apply_rope, rb.apply_rope_complex):
            y = fn(x, layout=layout, rotary_dim=4)
            assert (y.shape, y.dtype, y.device) == (x.shape, x.dtype, x.device)
            torch.testing.assert_close(y[..., 4:], x[..., 4:], rtol=0, atol=0)


def test_empty_inputs():
    for shape in [(2, 3, 0, 8), (0, 4, 5, 8)]:
        x = torch.randn(shape)
        for layout in LAYOUTS:
            assert rb.apply_rope(x, layout=layout).shape == shape


# ----------------------------------------------------------------------------- layout conversion


def test_layout_permutation_maps_pairs():
    p = rb.layout_permutation(8)
    assert p.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    for i in range(4):  # pair i: interleaved (2i, 2i+1) lands on half (i, i + 4)
        assert (p[i].item(), p[i + 4].item()) == reference.pair_indices(i, 8, "interleaved")


@pytest.mark.parametrize("n_heads, head_dim", [(1, 8), (4, 16), (2, 128)])
def test_converter_permutation_preserves_attention_scores(n_heads, head_dim):
    g = torch.Generator().manual_seed(1)
    d_model, T = 32, 11
    x = torch.randn(T, d_model, dtype=torch.float64, generator=g)
    wq = torch.randn(n_heads * head_dim, d_model, dtype=torch.float64, generator=g)
    wk = torch.randn(n_heads * head_dim, d_model, dtype=torch.float64, generator=g)

    def scores(wq, wk, layout):
        q = (x @ wq.T).view(T, n_heads, head_dim).transpose(0, 1)  # (H, T, D)
        k = (x @ wk.T).view(T, n_heads, head_dim).transpose(0, 1)
        return rb.apply_rope(q, layout=layout) @ rb.apply_rope(k, layout=layout).transpose(-1, -2)  # (H, T, T)

    meta = scores(wq, wk, "interleaved")
    hf = scores(rb.interleaved_to_half_weights(wq, n_heads), rb.interleaved_to_half_weights(wk, n_heads), "half")
    torch.testing.assert_close(hf, meta, rtol=1e-12, atol=1e-10)
    assert not torch.allclose(scores(wq, wk, "half"), meta)  # without the permutation they differ


@pytest.mark.parametrize("head_dim, rotary_dim", [(8, 4), (16, 6), (7, 4)])
def test_converter_with_partial_rotary(head_dim, rotary_dim):
    """GPT-J rotates the first rotary_dim features of a head, interleaved; the rest pass through. Converting its
    W_q, W_k to the half layout permutes those features only: with rotary_dim the scores are unchanged."""
    n_heads, d_model, T = 3, 24, 9
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, d_model, dtype=torch.float64, generator=g)
    wq, wk = (torch.randn(n_heads * head_dim, d_model, dtype=torch.float64, generator=g) for _ in range(2))

    def scores(wq, wk, layout):
        q, k = ((x @ w.T).view(T, n_heads, head_dim).transpose(0, 1) for w in (wq, wk))  # (H, T, D)
        rot = [rb.apply_rope(t, layout=layout, rotary_dim=rotary_dim) for t in (q, k)]
        return rot[0] @ rot[1].transpose(-1, -2)

    meta = scores(wq, wk, "interleaved")
    conv = [rb.interleaved_to_half_weights(w, n_heads, rotary_dim=rotary_dim) for w in (wq, wk)]
    eps = torch.finfo(torch.float64).eps
    torch.testing.assert_close(scores(*conv, "half"), meta, rtol=0, atol=64 * head_dim * eps * meta.abs().max().item())
    p = rb.layout_permutation(head_dim, rotary_dim=rotary_dim)
    assert torch.equal(p[rotary_dim:], torch.arange(rotary_dim, head_dim))  # the pass-through features stay
    if head_dim % 2 == 0:  # the whole-head permutation moves pass-through features too: the silent mistake
        whole = [rb.interleaved_to_half_weights(w, n_heads) for w in (wq, wk)]
        assert not torch.allclose(scores(*whole, "half"), meta)
    too_many = head_dim + 2 - head_dim % 2  # even, past the head
    with pytest.raises(ValueError, match=rf"rotary_dim must be at most head_dim={head_dim}, got rotary_dim={too_many}"):
        rb.interleaved_to_half_weights(wq, n_heads, rotary_dim=too_many)


def test_converter_with_grouped_query_attention():
    """Hugging Face's converter permutes W_k with num_key_value_heads. With head_dim given, the query heads'
    count (which also divides W_k's rows) raises instead of permuting with a head size of 4."""
    n_heads, n_kv_heads, head_dim, d_model = 4, 2, 8, 32
    wk = torch.randn(n_kv_heads * head_dim, d_model, generator=torch.Generator().manual_seed(2))
    hf_permute = wk.view(n_kv_heads, head_dim // 2, 2, d_model).transpose(1, 2).reshape(n_kv_heads * head_dim, d_model)
    got = rb.interleaved_to_half_weights(wk, n_kv_heads, head_dim=head_dim)
    torch.testing.assert_close(got, hf_permute, rtol=0, atol=0)
    torch.testing.assert_close(got, rb.interleaved_to_half_weights(wk, n_kv_heads), rtol=0, atol=0)
    assert not torch.equal(rb.interleaved_to_half_weights(wk, n_heads), hf_permute)  # the silent mistake
    with pytest.raises(ValueError, match=r"w\.shape\[0\] must be n_heads \* head_dim = 4 \* 8 = 32, got w\.shape=\(16, 32\)"):
        rb.interleaved_to_half_weights(wk, n_heads, head_dim=head_dim)
    with pytest.raises(ValueError, match=r"\(out_features, in_features\)"):  # stored (in, out)
        rb.interleaved_to_half_weights(wk.T.contiguous(), n_kv_heads, head_dim=head_dim)


def test_numpy_scalars_are_taken_as_their_values():
    """np.int64 dims and numpy bases were refused with "dim must be a positive even integer, got dim=np.int64(8)"."""
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(rb.rope_frequencies(np.int64(8), base=np.float32(100.0)), rb.rope_frequencies(8, base=100.0))
    torch.testing.assert_close(rb.apply_rope(x, rotary_dim=np.int64(4), base=np.int64(100)),
                               rb.apply_rope(x, rotary_dim=4, base=100.0), rtol=0, atol=0)
    assert rb.RotaryEmbedding(np.int64(8)).dim == 8 and type(rb.RotaryEmbedding(np.int64(8)).dim) is int
    assert rb.layout_permutation(np.int32(6)).tolist() == [0, 2, 4, 1, 3, 5]


def test_a_numpy_float32_base_is_computed_with_as_a_python_float():
    """A check took np.float32(100.0) but its caller kept the numpy scalar: the float64 oracle then formed its
    frequencies in float32 (off by 1.5e-3 at positions near 1e5), and so did lrpe and the scaling rules."""
    from ropebook.kernels import rope_cache  # the kernels' table (no Triton needed to build it)

    b32, x = np.float32(100.0), torch.randn(3, 8, dtype=torch.float64)
    positions = torch.tensor([0, 77_777, 99_999])
    exact = {  # name: (with the float32 base, with the Python float)
        "reference.rope_frequencies": lambda b: torch.as_tensor(rb.reference.rope_frequencies(8, base=b)),
        "reference.apply_rope_reference": lambda b: torch.as_tensor(
            rb.reference.apply_rope_reference(x.numpy(), positions.numpy(), base=b)),
        "reference.rope_matrix": lambda b: torch.as_tensor(rb.reference.rope_matrix(99_999, 8, base=b)),
        "lrpe.Rotation": lambda b: rb.lrpe.Rotation(8, base=b)(x, positions),
        "NTKAware.inv_freq": lambda b: rb.scaling.NTKAware(2.0).inv_freq(8, base=b),
        "YaRN.inv_freq": lambda b: rb.scaling.YaRN(2.0, 64).inv_freq(8, base=b),
        "sinusoidal_encoding": lambda b: rb.positions.sinusoidal_encoding(4, 8, base=b, dtype=torch.float64),
        "rope_cache": lambda b: rope_cache(8, base=b, max_positions=100_000).cos,
    }
    for name, fn in exact.items():
        torch.testing.assert_close(fn(b32), fn(100.0), rtol=0, atol=0, msg=name)
    assert type(rb.model.ModelConfig(base=b32).base) is float and type(rb.lrpe.Rotation(8, base=b32).base) is float


def test_low_precision_positions_are_refused_not_rounded():
    """bf16 positions 0 … 299 hold 257 → 256 and so on: apply_rope's answer was off by up to 2.2 from the integer one."""
    x = torch.randn(300, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rounded = torch.arange(300).bfloat16()
    assert (rounded.long() != torch.arange(300)).any()  # the rounding the error is about
    for call in (lambda: rb.apply_rope(x, rounded), lambda: rb.apply_rope_complex(x, rounded),
                 lambda: rb.rope_cos_sin(rounded, 64), lambda: rb.rope.rope_angles(rounded, rb.rope_frequencies(64)),
                 lambda: rb.RotaryEmbedding(64).cos_sin(rounded), lambda: rb.apply_rope(x, offset=rounded[:, None] * 0)):
        with pytest.raises(ValueError, match=r"must be integers or float32/float64, got (positions|offset)\.dtype=torch\.bfloat16"):
            call()
    # float32 positions are taken up to 2^24 (every integer exact), float64 and int64 beyond
    big = 2**24 + torch.arange(3)
    torch.testing.assert_close(rb.apply_rope(x[:3], big.double()), rb.apply_rope(x[:3], big), rtol=0, atol=0)
    rb.apply_rope(x[:1], torch.tensor([-(2.0**24)]))


def test_converter_matches_meta_to_hf_reshape():
    """The transformers Llama converter writes the permutation as a view/transpose."""
    n_heads, head_dim, d_model = 4, 16, 8
    w = torch.randn(n_heads * head_dim, d_model)
    hf_permute = w.view(n_heads, head_dim // 2, 2, d_model).transpose(1, 2).reshape(n_heads * head_dim, d_model)
    torch.testing.assert_close(rb.interleaved_to_half_weights(w, n_heads), hf_permute, rtol=0, atol=0)
    bias = torch.arange(float(n_heads * head_dim))
    assert rb.interleaved_to_half_weights(bias, n_heads).shape == bias.shape


# ----------------------------------------------------------------------------- properties (hypothesis)

dims = st.sampled_from([2, 4, 8, 16, 64])
layouts = st.sampled_from(LAYOUTS)
bases = st.sampled_from([10.0, 10000.0, 500000.0])
positions = st.integers(min_value=-10_000, max_value=10_000)
PROPERTY = settings(max_examples=25, deadline=None)


def _vec(seed: int, *shape):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@PROPERTY
@given(dim=dims, layout=layouts, base=bases, m=positions, n=positions, shift=positions, seed=st.integers(0, 2**16))
def test_scores_depend_only_on_offset(dim, layout, base, m, n, shift, seed):
    q, k = _vec(seed, 1, dim), _vec(seed + 1, 1, dim)

    def score(m, n):
        qm = rb.apply_rope(q, torch.tensor([m]), base=base, layout=layout)
        kn = rb.apply_rope(k, torch.tensor([n]), base=base, layout=layout)
        return (qm * kn).sum()

    scale = q.norm() * k.norm()
    assert abs(score(m, n) - score(m + shift, n + shift)) <= 1e-10 * scale
    # and equals q^T R_{n-m} k (RoFormer eq. 16)
    R = torch.from_numpy(reference.rope_matrix(n - m, dim, base=base, layout=layout))
    assert abs(score(m, n) - q[0] @ R @ k[0]) <= 1e-10 * scale


@PROPERTY
@given(dim=dims, layout=layouts, base=bases, seed=st.integers(0, 2**16))
def test_norms_preserved_and_inverse_rotation(dim, layout, base, seed):
    x = _vec(seed, 3, 7, dim)
    pos = torch.randint(-10**6, 10**6, (7,), generator=torch.Generator().manual_seed(seed))
    y = rb.apply_rope(x, pos, base=base, layout=layout)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rb.apply_rope(y, -pos, base=base, layout=layout), x, rtol=1e-9, atol=1e-9)


@PROPERTY
@given(dim=dims, layout=layouts, base=bases, seed=st.integers(0, 2**16), frac=st.booleans())
def test_complex_form_equals_real_form(dim, layout, base, seed, frac):
    x = _vec(seed, 2, 5, dim)
    pos = torch.randint(0, 10**5, (5,)) + (0.25 if frac else 0)
    torch.testing.assert_close(
        rb.apply_rope_complex(x, pos, base=base, layout=layout), rb.apply_rope(x, pos, base=base, layout=layout),
        rtol=1e-12, atol=1e-12,
    )


@PROPERTY
@given(dim=dims, base=bases, seed=st.integers(0, 2**16))
def test_layouts_agree_after_permutation(dim, base, seed):
    x = _vec(seed, 2, 6, dim)  # interleaved features
    p = rb.layout_permutation(dim)
    torch.testing.assert_close(
        rb.apply_rope(x[..., p], base=base, layout="half"), rb.apply_rope(x, base=base, layout="interleaved")[..., p],
        rtol=0, atol=1e-14,
    )


# ----------------------------------------------------------------------------- precision at large positions

# Unit roundoff u of each format (half an ulp, relative): rounding one exact value to it errs by at most u·|value|.
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
FAR_POSITIONS = [0, 1, 4095, 65_537, 100_003, 524_287, 999_999, 1_000_000]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_low_precision_error_is_only_output_rounding(dtype, layout, device):
    """|y − y_ref| ≤ u·|y_ref| + (fp32 slack): the error is the rounding of the result to dtype, nothing more.

    The fp32 slack covers cos/sin and the multiply-adds in fp32: a few units of 2^-24 times |x_a| + |x_b|.
    """
    x = torch.randn(2, len(FAR_POSITIONS), 128, generator=torch.Generator().manual_seed(0)).to(dtype).to(device)
    pos = torch.tensor(FAR_POSITIONS, device=device)
    y = rb.apply_rope(x, pos, layout=layout).double().cpu()
    y_ref = torch.from_numpy(reference.apply_rope_reference(x.cpu(), pos.cpu(), layout=layout))
    x64 = x.double().cpu()
    partner = x64[..., rb.layout_permutation(128)] if layout == "interleaved" else x64
    pair_mag = (partner[..., :64].abs() + partner[..., 64:].abs()).repeat(1, 1, 2)
    if layout == "interleaved":
        pair_mag = pair_mag[..., torch.argsort(rb.layout_permutation(128))]
    bound = UNIT_ROUNDOFF[dtype] * y_ref.abs() + 8 * 2.0**-24 * pair_mag + 2.0**-25  # 2^-25: fp16 subnormals
    err = (y - y_ref).abs()
    assert (err <= bound).all(), f"worst excess {(err - bound).max().item():.3g}"


def test_fp32_angles_are_off_by_1e_minus_2_at_large_positions():
    """Angles as Hugging Face forms them (fp32 θ times fp32 positions) vs exact angles; ours are exact."""
    pos = torch.arange(100_000, 1_000_001, 9_973)
    exact = rb.rope.rope_angles(pos, rb.rope_frequencies(128))  # float64
    inv32 = rb.rope_frequencies(128, dtype=torch.float32)
    hf_angles = (pos.float()[:, None] * inv32).double()
    cos_err_fp32 = (hf_angles.cos() - exact.cos()).abs().max().item()
    ours_cos, _ = rb.rope_cos_sin(pos, 128)  # angles in float64, cos rounded to fp32
    ours_err = (ours_cos.double() - exact.cos()).abs().max().item()
    assert 3e-3 < cos_err_fp32 < 1e-1  # observed ~3e-2
    assert ours_err < 1e-7  # fp32 rounding of cos (2^-24) only


# ----------------------------------------------------------------------------- module, compile, autograd


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_rotary_embedding_matches_function_and_decodes(layout, device):
    rule = scaling.YaRN(4.0, original_max_positions=16)
    rope = rb.RotaryEmbedding(16, layout=layout, scaling=rule, rotary_dim=8, max_positions=4)
    q, k = torch.randn(2, 4, 9, 16, device=device), torch.randn(2, 1, 9, 16, device=device)
    q1, k1 = rope(q, k)
    torch.testing.assert_close(q1, rb.apply_rope(q, layout=layout, scaling=rule, rotary_dim=8))
    torch.testing.assert_close(k1, rb.apply_rope(k, layout=layout, scaling=rule, rotary_dim=8))
    # decoding: row 0 is at position 3, row 1 at position 8 (different prompt lengths)
    offsets = torch.tensor([3, 8], device=device)
    qd, kd = rope(q[:, :, :1], k[:, :, :1], offset=offsets)
    torch.testing.assert_close(qd[0], rb.apply_rope(q[0, :, :1], offset=3, layout=layout, scaling=rule, rotary_dim=8))
    torch.testing.assert_close(kd[1], rb.apply_rope(k[1, :, :1], offset=8, layout=layout, scaling=rule, rotary_dim=8))
    # the table grew past max_positions and is cached per (device, dtype)
    rope(q.double(), k.double())
    keys = {(key[0].type, key[1]) for key in rope._cache}
    assert {(torch.device(device).type, torch.float32), (torch.device(device).type, torch.float64)} <= keys


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_packed_batch_rotates_as_each_sequence_alone(layout, device):
    """A packed batch (sequences end to end, cu_seqlens their starts) through packed_positions: each sequence
    comes out as it would alone, at its own offset; an empty sequence takes no tokens."""
    lengths, offsets = [3, 0, 5, 1], [0, 7, 2, 100]
    cu = torch.tensor([0, 3, 3, 8, 9], dtype=torch.int32, device=device)
    assert rb.packed_positions(cu).tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 0]
    positions = rb.packed_positions(cu, offsets=torch.tensor(offsets, device=device))
    assert positions.tolist() == [0, 1, 2, 2, 3, 4, 5, 6, 100] and positions.dtype == torch.int64
    assert positions.device.type == torch.device(device).type
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(h, 9, 16, generator=g).to(device) for h in (4, 2))  # (H, N, D)
    rope = rb.RotaryEmbedding(16, layout=layout, rotary_dim=8)
    qr = rb.apply_rope(q, positions, layout=layout, rotary_dim=8)
    qm, km = rope(q, k, positions)
    for b, start in enumerate([0, 3, 3, 8]):
        part = slice(start, start + lengths[b])
        want = rb.apply_rope(q[:, part], offset=offsets[b], layout=layout, rotary_dim=8)
        torch.testing.assert_close(qr[:, part], want)
        torch.testing.assert_close(qm[:, part], want)
        torch.testing.assert_close(km[:, part], rb.apply_rope(k[:, part], offset=offsets[b], layout=layout, rotary_dim=8))
    assert rb.packed_positions(cu, offsets=5).tolist() == [5, 6, 7, 5, 6, 7, 8, 9, 5]


def test_rotary_embedding_dynamic_and_longrope_follow_seq_len():
    for rule in (scaling.DynamicNTK(2.0, original_max_positions=8), scaling.LongRoPE([1.0] * 4, [3.0] * 4, 8, max_positions=32)):
        rope = rb.RotaryEmbedding(8, scaling=rule)
        for T in (4, 20):
            q = torch.randn(1, 2, T, 8)
            q1, _ = rope(q, q)
            torch.testing.assert_close(q1, rb.apply_rope(q, scaling=rule))
        assert not torch.allclose(rb.apply_rope(q, scaling=rule)[..., :4, :], rb.apply_rope(q[..., :4, :], scaling=rule))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(layout, device):
    compiled = torch.compile(rb.apply_rope, fullgraph=True, dynamic=False)
    x = torch.randn(1, 2, 8, 16, device=device)
    torch.testing.assert_close(compiled(x, layout=layout), rb.apply_rope(x, layout=layout))


def test_torch_compile_with_a_changing_int_offset():
    """A decoding loop's offset changes every step: Dynamo makes it a symbolic int after the first
    recompile, and the offset's check must not inspect its value then (it did, and failed to trace)."""
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, o: rb.apply_rope(x, offset=o), fullgraph=True)
    x = torch.randn(2, 4, 8)
    for offset in (3, 4, 5):
        torch.testing.assert_close(compiled(x, offset), rb.apply_rope(x, offset=offset))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_fp64(layout, device):
    x = torch.randn(1, 2, 5, 8, dtype=torch.float64, device=device, requires_grad=True)
    pos = torch.tensor([0.0, 1.5, 2.0, 7.0, 100.0], dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda x: rb.apply_rope(x, pos, layout=layout, rotary_dim=6), (x,))
    assert torch.autograd.gradcheck(lambda x: rb.apply_rope_complex(x, pos, layout=layout), (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_no_grad_fast_path_equals_autograd_path(device):
    x = torch.randn(2, 3, 7, 16, device=device)
    for layout in LAYOUTS:
        with torch.no_grad():
            fast = rb.apply_rope(x, layout=layout)
        slow = rb.apply_rope(x.requires_grad_(), layout=layout)
        x.requires_grad_(False)
        torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-6)


# (elements a block, the path it takes) for x of (B, H, T, D) = (3, 2, 7, 16): 6 rows of T·D = 112 elements
CPU_BLOCKS = [(448, "4 whole rows a block, the last block 2 rows"), (224, "2 whole rows a block"),
              (48, "3 of a row's 7 tokens a block, the last block 1 token")]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block, path", CPU_BLOCKS, ids=[p for _, p in CPU_BLOCKS])
def test_cpu_blocks_of_low_precision_input_read_their_own_cos_sin(monkeypatch, dtype, block, path):
    """bf16/fp16 on the CPU rotate in blocks (_rotation._CPU_BLOCK_PER_THREAD elements a thread) so that the fp32
    temporaries stay in cache; with one position offset per sequence every block must read its own rows' and
    tokens' cos and sin. Real inputs take several blocks only from 2^18 elements a thread on, so the block is
    made small here; the result must be the single block's (the same fp32 arithmetic, element by element).
    2^-24: fp16's subnormal spacing."""
    from ropebook import _rotation

    x = torch.randn(3, 2, 7, 16, generator=torch.Generator().manual_seed(0)).to(dtype)  # (B, H, T, D)
    offset = torch.tensor([0, 5, 300]).view(3, 1, 1)  # a different start per sequence
    with torch.no_grad():
        one_block = rb.apply_rope(x, offset=offset)
        monkeypatch.setattr(_rotation.torch, "get_num_threads", lambda: 1)
        monkeypatch.setattr(_rotation, "_CPU_BLOCK_PER_THREAD", block)
        blocked = rb.apply_rope(x, offset=offset)
    # one unit in the last place of dtype (2u) at most, should a vectorized tail round an fp32 product differently
    torch.testing.assert_close(blocked, one_block, rtol=2 * UNIT_ROUNDOFF[dtype], atol=2.0**-24)


@pytest.mark.parametrize("device", DEVICES)
def test_backend_triton_is_a_clear_error_or_works(device):
    x = torch.randn(1, 1, 4, 8, device=device)
    torch.testing.assert_close(rb.apply_rope(x, backend="auto"), rb.apply_rope(x))
    try:
        y = rb.apply_rope(x, backend="triton")
    except RuntimeError as err:  # no Triton, or a CPU tensor outside TRITON_INTERPRET=1
        assert device == "cpu" and "backend='triton'" in str(err)
    else:
        torch.testing.assert_close(y, rb.apply_rope(x))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_message(case):
    call, words = BAD_INPUTS[case]
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_bad_input_in_module_and_complex_form():
    with pytest.raises(ValueError, match=r"RotaryEmbedding: layout must be one of \('half', 'interleaved'\), got layout='x'"):
        rb.RotaryEmbedding(8, layout="x")
    with pytest.raises(ValueError, match=r"apply_rope_complex: head_dim must be even, got x.shape=\(3, 5\)"):
        rb.apply_rope_complex(torch.zeros(3, 5))
    rope = rb.RotaryEmbedding(8)
    with pytest.raises(ValueError, match=r"RotaryEmbedding: q must have shape \(..., T, dim=8\), got q.shape=\(1, 4, 6\)"):
        rope(torch.zeros(1, 4, 6), torch.zeros(1, 4, 8))


@pytest.mark.parametrize("rule", [rb.scaling.DynamicNTK(4.0, 16), rb.scaling.LongRoPE([1.0] * 4, [4.0] * 4, 16, max_positions=64)],
                         ids=["DynamicNTK", "LongRoPE"])
def test_length_dependent_rules_default_to_the_same_length_everywhere(rule):
    """rope_cos_sin took seq_len=None as the training length while apply_rope and RotaryEmbedding take
    max(positions) + 1: past the training length their angles differed by up to 2.4 with no error."""
    positions = torch.arange(40)  # past the training length 16
    cos, sin = rb.rope_cos_sin(positions, 8, scaling=rule)
    torch.testing.assert_close((cos, sin), rb.RotaryEmbedding(8, scaling=rule).cos_sin(positions))
    torch.testing.assert_close((cos, sin), rb.rope_cos_sin(positions, 8, scaling=rule, seq_len=40))
    short = rb.rope_cos_sin(positions, 8, scaling=rule, seq_len=16)  # the training length: other angles
    assert (cos - short[0]).abs().max() > 0.1
    x = torch.randn(40, 8, dtype=torch.float64)
    torch.testing.assert_close(rb.apply_rope(x, positions, scaling=rule),
                               rb.apply_rope(x, positions, scaling=rule, seq_len=40), rtol=0, atol=0)
