"""ropebook.positions against Hugging Face (T5 buckets, Bloom's ALiBi), the papers' formulas and properties."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropebook import reference
from ropebook.attention import softmax_attention
from ropebook.positions import alibi_bias, alibi_slopes, shaw_relative_index, sinusoidal_encoding, t5_relative_bucket

t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")

# (bidirectional, num_buckets, max_distance): T5's default, the causal decoder, and odd sizes.
T5_CONFIGS = [(True, 32, 128), (False, 32, 128), (True, 8, 20), (False, 8, 20), (True, 64, 256), (False, 7, 50), (True, 6, 7)]
HEAD_COUNTS = list(range(1, 20)) + [24, 32, 40, 64, 71]  # powers of two and the paper's fill-up rule
SINUSOIDAL_SHAPES = [(1, 2), (5, 8), (64, 16), (300, 6)]


# ----------------------------------------------------------------------------- sinusoidal


@pytest.mark.parametrize("seq_len,dim", SINUSOIDAL_SHAPES)
def test_sinusoidal_matches_formula_in_float64(seq_len, dim):
    """PE[m, 2i] = sin(m / b^(2i/d)), PE[m, 2i+1] = cos(m / b^(2i/d)), as in Vaswani et al. §3.5."""
    pe = sinusoidal_encoding(seq_len, dim, dtype=torch.float64).numpy()
    expected = np.zeros((seq_len, dim))
    for m in range(seq_len):
        for i in range(dim // 2):
            expected[m, 2 * i] = math.sin(m / 10000.0 ** (2 * i / dim))
            expected[m, 2 * i + 1] = math.cos(m / 10000.0 ** (2 * i / dim))
    np.testing.assert_allclose(pe, expected, rtol=0, atol=8 * np.finfo(np.float64).eps * max(seq_len, 1))


def test_sinusoidal_uses_ropes_frequencies():
    dim, base = 12, 500.0
    pe = sinusoidal_encoding(1000, dim, base=base, dtype=torch.float64)
    theta = torch.as_tensor(reference.rope_frequencies(dim, base=base))
    torch.testing.assert_close(torch.atan2(pe[1, 0::2], pe[1, 1::2]), theta, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sinusoidal_low_precision_is_a_cast_of_float64(dtype):
    """Angles are formed in float64: the result is the float64 table rounded once."""
    exact = sinusoidal_encoding(4096, 64, dtype=torch.float64)
    assert torch.equal(sinusoidal_encoding(4096, 64, dtype=dtype), exact.to(dtype))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 500), st.integers(0, 500), st.integers(-40, 40))
def test_sinusoidal_dot_product_depends_on_offset_only(m, n, shift):
    """PE(m)·PE(n) = Σ_i cos((m − n)θ_i): shifting both positions leaves it unchanged."""
    pe = sinusoidal_encoding(600, 16, dtype=torch.float64)
    m2, n2 = m + 50 + shift, n + 50 + shift
    assert float(pe[m] @ pe[n]) == pytest.approx(float(pe[m2] @ pe[n2]), abs=1e-12)


# ----------------------------------------------------------------------------- Shaw


@pytest.mark.parametrize("seq_len,k", [(1, 1), (6, 2), (10, 3), (5, 10)])
def test_shaw_index_is_clipped_offset(seq_len, k):
    index = shaw_relative_index(seq_len, k)
    for m in range(seq_len):
        for n in range(seq_len):
            assert index[m, n] == max(-k, min(k, n - m)) + k
    assert index.dtype == torch.int64 and int(index.min()) >= 0 and int(index.max()) <= 2 * k


def test_shaw_index_is_toeplitz():
    index = shaw_relative_index(12, 3)
    assert torch.equal(index[1:, 1:], index[:-1, :-1]), "the index must depend on n − m only"


# ----------------------------------------------------------------------------- T5


@pytest.mark.parametrize("bidirectional,num_buckets,max_distance", T5_CONFIGS)
def test_t5_bucket_matches_hugging_face(bidirectional, num_buckets, max_distance):
    relative = torch.arange(-3000, 3001)
    ours = t5_relative_bucket(relative, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    theirs = t5.T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    torch.testing.assert_close(ours, theirs.long(), rtol=0, atol=0)


@pytest.mark.parametrize("bidirectional,num_buckets,max_distance", T5_CONFIGS)
def test_t5_bucket_structure(bidirectional, num_buckets, max_distance):
    """Exact near zero, monotone in distance, bounded, and one bucket for everything past max_distance."""
    half = num_buckets // 2 if bidirectional else num_buckets
    past = -torch.arange(0, 4 * max_distance)  # keys before the query: n − m ≤ 0
    buckets = t5_relative_bucket(past, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    exact = half // 2
    assert torch.equal(buckets[:exact], torch.arange(exact)), "small distances get a bucket each"
    assert bool((buckets.diff() >= 0).all()), "buckets grow with distance"
    assert int(buckets.max()) == half - 1 and bool((buckets[max_distance:] == half - 1).all())


def test_t5_causal_sends_future_keys_to_bucket_zero():
    future = torch.arange(1, 500)
    assert bool((t5_relative_bucket(future, bidirectional=False) == 0).all())


# ----------------------------------------------------------------------------- ALiBi


@pytest.mark.parametrize("n_heads", HEAD_COUNTS)
def test_alibi_slopes_match_bloom(n_heads):
    theirs = bloom._get_alibi_slopes(n_heads, torch.device("cpu"))  # float32
    torch.testing.assert_close(alibi_slopes(n_heads).float(), theirs)  # float32 tolerance: HF rounds each power


def test_alibi_slopes_for_eight_heads_are_the_papers():
    """Press et al. §3: for 8 heads the slopes are 1/2, 1/4, …, 1/256."""
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -j for j in range(1, 9)], dtype=torch.float64))


@pytest.mark.parametrize("n_heads,seq_len", [(1, 5), (4, 9), (12, 16)])
def test_alibi_attention_equals_blooms(n_heads, seq_len):
    """Bloom adds slope·n (no −slope·m): a constant per row, so the softmax weights are the same."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(n_heads, seq_len, seq_len, generator=g, dtype=torch.float64)
    ours = (scores + alibi_bias(seq_len, n_heads)).softmax(-1)
    theirs_bias = bloom.build_alibi_tensor(torch.ones(1, seq_len), n_heads, torch.float64)  # (H, 1, T)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
    theirs = (scores + theirs_bias).masked_fill(causal, float("-inf")).softmax(-1)
    # Bloom's slopes are float32: the tolerance is float32's.
    torch.testing.assert_close(ours, theirs, rtol=1.3e-6, atol=1e-5)


def test_alibi_bias_is_causal_and_relative():
    bias = alibi_bias(10, 4)
    assert bool(torch.isneginf(bias[:, 0, 1:]).all()), "keys after the query are masked"
    lower = torch.ones(10, 10, dtype=torch.bool).tril()
    torch.testing.assert_close(bias[:, 1:, 1:][:, lower[1:, 1:]], bias[:, :-1, :-1][:, lower[:-1, :-1]], rtol=0, atol=0)


def test_alibi_with_softmax_attention_is_permutation_sensitive():
    """With ALiBi the output depends on order; without it, attention is permutation-equivariant."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    plain = softmax_attention(q, k, v)
    torch.testing.assert_close(softmax_attention(q[:, perm], k[:, perm], v[:, perm]), plain[:, perm])
    biased = ((q @ k.transpose(-1, -2)) / math.sqrt(8) + alibi_bias(6, 1)).softmax(-1) @ v
    biased_perm = ((q[:, perm] @ k[:, perm].transpose(-1, -2)) / math.sqrt(8) + alibi_bias(6, 1)).softmax(-1) @ v[:, perm]
    assert not torch.allclose(biased_perm, biased[:, perm])


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    (lambda: sinusoidal_encoding(0, 8), "sinusoidal_encoding: seq_len must be a positive integer, got seq_len=0"),
    (lambda: sinusoidal_encoding(4, 7), "sinusoidal_encoding: dim must be a positive even integer, got dim=7"),
    (lambda: sinusoidal_encoding(4, 8, base=-1.0), "sinusoidal_encoding: base must be a finite number > 1, got base=-1.0"),
    (lambda: shaw_relative_index(4, 0), "shaw_relative_index: max_relative_position must be a positive integer, got max_relative_position=0"),
    (lambda: t5_relative_bucket(torch.tensor([0.5])), "t5_relative_bucket: relative_position must hold integers, got dtype=torch.float32"),
    (lambda: t5_relative_bucket(torch.tensor([1]), num_buckets=31), "num_buckets must be a positive even integer, got num_buckets=31"),
    (lambda: t5_relative_bucket(torch.tensor([1]), num_buckets=32, max_distance=4), "need max_distance > max_exact"),
    (lambda: alibi_slopes(0), "alibi_slopes: n_heads must be a positive integer, got n_heads=0"),
    (lambda: alibi_bias(3.0, 2), "alibi_bias: seq_len must be a positive integer, got seq_len=3.0"),
]


@pytest.mark.parametrize("call,message", BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_names_argument_and_values(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8])
def test_t5_buckets_do_not_depend_on_the_integer_dtype(dtype):
    """abs() of int8 −128 is −128 and −3 in uint8 is 253: the buckets came out negative or wrong, silently."""
    info = torch.iinfo(dtype)
    offsets = torch.arange(max(info.min, -200), min(info.max, 200) + 1)
    for bidirectional in (True, False):
        torch.testing.assert_close(t5_relative_bucket(offsets.to(dtype), bidirectional=bidirectional),
                                   t5_relative_bucket(offsets, bidirectional=bidirectional), rtol=0, atol=0)
