"""Softmax and linear attention with a relative encoding: O(T) form == O(T²) definition == numpy oracle,
exact causal masking, the denominator stays plain, shapes/dtypes/devices, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropebook import attention as A
from ropebook import lrpe
from ropebook.checks.linear import linear_attention_reference

D = 8
ENCODINGS = {
    "none": lambda: None,
    "rope": lambda: lrpe.Rotation(D),
    "permutation": lambda: lrpe.Permutation(D, seed=1),
    "dct": lambda: lrpe.Unitary(D, basis="dct"),
    "householder": lambda: lrpe.Unitary(D, basis="householder", seed=2),
    "learned_householder": lambda: lrpe.LearnedHouseholder(D, seed=3),
}
# (T, chunk_size): one chunk, several chunks with a ragged tail, chunk of 1 (the pure recurrence)
CHUNKINGS = [(7, 64), (23, 5), (9, 1), (16, 8)]
DTYPES = {torch.float64: (1e-12, 1e-12), torch.float32: (2e-5, 2e-6)}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _qkv(T, *, lead=(2, 3), dtype=torch.float64, seed=0, device="cpu", dv=5):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, *lead, T, D, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, T, dv, generator=g, dtype=torch.float64)
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T,chunk", CHUNKINGS)
def test_linear_equals_quadratic(name, causal, T, chunk):
    q, k, v = _qkv(T)
    enc = ENCODINGS[name]()
    fast = A.linear_attention(q, k, v, causal=causal, encoding=enc, chunk_size=chunk)
    slow = A.linear_attention_quadratic(q, k, v, causal=causal, encoding=enc)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["none", "rope", "permutation", "learned_householder"])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_equals_numpy_oracle(name, causal):
    q, k, v = _qkv(6, lead=())
    enc = ENCODINGS[name]()
    matrices = None if enc is None else enc.matrix
    out = A.linear_attention(q, k, v, causal=causal, encoding=enc, chunk_size=4)
    expected = linear_attention_reference(q, k, v, causal=causal, matrices=matrices)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ENCODINGS)
@settings(max_examples=10, deadline=None)
@given(cut=st.integers(1, 19), seed=st.integers(0, 2**16))
def test_causal_masking_is_exact(name, cut, seed):
    """Changing tokens at positions ≥ cut leaves outputs before cut bit-for-bit unchanged."""
    q, k, v = _qkv(20, seed=seed)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[..., cut:, :] = torch.randn_like(t[..., cut:, :]) * 10
    enc = ENCODINGS[name]()
    for fn in (A.linear_attention, A.linear_attention_quadratic, A.softmax_attention):
        kw = {"chunk_size": 6} if fn is A.linear_attention else {}
        a = fn(q, k, v, causal=True, encoding=enc, **kw)[..., :cut, :]
        b = fn(q2, k2, v2, causal=True, encoding=enc, **kw)[..., :cut, :]
        assert torch.equal(a, b), fn.__name__
    # the non-causal form does see the change, so the comparison above can fail
    assert not torch.equal(A.linear_attention(q, k, v, encoding=enc)[..., :cut, :],
                           A.linear_attention(q2, k2, v2, encoding=enc)[..., :cut, :])


def test_softmax_matches_explicit_formula_and_sdpa():
    q, k, v = _qkv(11)
    enc = lrpe.Rotation(D)
    qr, kr = enc(q, torch.arange(11)), enc(k, torch.arange(11))
    scores = qr @ kr.transpose(-1, -2) / math.sqrt(D)
    mask = torch.ones(11, 11, dtype=torch.bool).tril()
    expected = scores.masked_fill(~mask, -math.inf).softmax(-1) @ v
    torch.testing.assert_close(A.softmax_attention(q, k, v, causal=True, encoding=enc), expected, rtol=1e-12, atol=1e-12)
    sdpa = torch.nn.functional.scaled_dot_product_attention(qr, kr, v, is_causal=True)
    torch.testing.assert_close(A.softmax_attention(q, k, v, causal=True, encoding=enc), sdpa, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(A.softmax_attention(q, k, v, encoding=enc),
                               torch.nn.functional.scaled_dot_product_attention(qr, kr, v), rtol=1e-10, atol=1e-10)


def test_plain_weights_are_a_distribution_and_rope_weights_are_not():
    q, k, _ = _qkv(32, lead=(), seed=5)
    plain = A.linear_attention_weights(q, k, causal=True)
    torch.testing.assert_close(plain.sum(-1), torch.ones(32, dtype=torch.float64))
    assert bool((plain >= 0).all())
    rope = A.linear_attention_weights(q, k, causal=True, encoding=lrpe.Rotation(D, base=10.0))
    assert bool((rope < 0).any()), "RoPE in the numerator should give some negative weights on random inputs"
    assert not torch.allclose(rope.sum(-1), torch.ones(32, dtype=torch.float64))


def test_denominator_is_unrotated():
    """With v = 1 the output is the row sum Σ_n (M φq)ᵀ(M φk) / Σ_n φqᵀφk: check against the two sums."""
    q, k, _ = _qkv(10, lead=(), seed=7)
    enc = lrpe.Rotation(D)
    ones = torch.ones(10, 1, dtype=torch.float64)
    fq, fk = A.feature_map(q), A.feature_map(k)
    num = (enc(fq) @ enc(fk).T).tril().sum(-1)
    den = (fq @ fk.T).tril().sum(-1)
    torch.testing.assert_close(A.linear_attention(q, k, ones, causal=True, encoding=enc)[:, 0], num / den)


@pytest.mark.parametrize("dtype", list(DTYPES) + [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_device_shape(dtype, device):
    q, k, v = _qkv(13, dtype=dtype, device=device)
    enc = lrpe.Rotation(D).to(device)
    ref = A.linear_attention_quadratic(*(t.double() for t in (q, k, v)), causal=True, encoding=enc)
    for fn in (A.linear_attention, A.linear_attention_quadratic, A.softmax_attention):
        out = fn(q, k, v, causal=True, encoding=enc)
        assert out.shape == (2, 3, 13, 5) and out.dtype == dtype and out.device.type == device
    out = A.linear_attention(q, k, v, causal=True, encoding=enc)
    # computed in fp32 (fp64 for fp64) and rounded once to the output dtype
    eps = torch.finfo(dtype).eps
    tol = DTYPES.get(dtype, (2 * eps, 2 * eps))
    torch.testing.assert_close(out.double(), ref, rtol=tol[0], atol=tol[1] * ref.abs().max().item())


def test_gradients_flow_to_learned_householder():
    q, k, v = _qkv(9, dtype=torch.float64)
    enc = lrpe.LearnedHouseholder(D).double()
    A.linear_attention(q, k, v, causal=True, encoding=enc, chunk_size=4).sum().backward()
    assert enc.v.grad is not None and bool(enc.v.grad.ne(0).any())


def test_feature_maps():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert bool((A.feature_map(x, "elu") > 0).all())
    torch.testing.assert_close(A.feature_map(x, "relu"), x.clamp(min=0))
    with pytest.raises(ValueError, match=r"name must be one of .*got name='gelu'"):
        A.feature_map(x, "gelu")


BAD_INPUTS = [  # (kwargs override, message pattern)
    ({"q": torch.randn(4, 8, dtype=torch.float64).long()}, r"q must be a floating-point tensor .* got q.shape=\(4, 8\), q.dtype=torch.int64"),
    ({"k": torch.randn(5, 8, dtype=torch.float64)}, r"q and k must have the same shape .* q.shape=\(4, 8\), k.shape=\(5, 8\)"),
    ({"v": torch.randn(3, 2, dtype=torch.float64)}, r"v must have shape \(\.\.\., T, Dv\) with .* got v.shape=\(3, 2\)"),
    ({"v": torch.randn(4, 2)}, r"q, k, v must share dtype and device"),
    ({"feature_map": "softmax"}, r"feature_map must be one of .*got feature_map='softmax'"),
    ({"chunk_size": 0}, r"chunk_size must be a positive integer, got chunk_size=0"),
    ({"positions": torch.arange(5)}, r"positions must have shape \(T,\)=\(4,\), got positions.shape=\(5,\)"),
]


@pytest.mark.parametrize("override,pattern", BAD_INPUTS)
@pytest.mark.parametrize("encoding", [None, "rope"])
def test_bad_input_names_argument(override, pattern, encoding):
    tensors = {"q": torch.randn(4, 8, dtype=torch.float64), "k": torch.randn(4, 8, dtype=torch.float64),
               "v": torch.randn(4, 2, dtype=torch.float64)}
    tensors.update({name: t for name, t in override.items() if name in ("q", "k", "v")})
    options = {name: value for name, value in override.items() if name not in ("q", "k", "v")}
    enc = lrpe.Rotation(8) if encoding else None
    with pytest.raises(ValueError, match=pattern):
        A.linear_attention(tensors["q"], tensors["k"], tensors["v"], causal=True, encoding=enc, **options)
    if not {"chunk_size", "feature_map"} & set(options):  # softmax_attention has neither option
        with pytest.raises(ValueError, match=pattern):
            A.softmax_attention(tensors["q"], tensors["k"], tensors["v"], causal=True, encoding=enc, **options)


@pytest.mark.parametrize("options, pattern", [
    ({"encoding": "rope"}, r"softmax_attention: encoding must be None or a callable .* got encoding='rope'"),
    ({"scale": "x"}, r"softmax_attention: scale must be None or a positive finite number, got scale='x'"),
    ({"scale": float("nan")}, r"softmax_attention: scale must be None or a positive finite number, got scale=nan"),
    ({"scale": 0.0}, r"softmax_attention: scale must be .* got scale=0\.0"),
])
def test_softmax_attention_checks_encoding_and_scale(options, pattern):
    q, k, v = _qkv(4)
    with pytest.raises(ValueError, match=pattern):
        A.softmax_attention(q, k, v, **options)
    if "encoding" in options:  # the linear forms apply the encoding too
        for fn in (A.linear_attention, A.linear_attention_quadratic):
            with pytest.raises(ValueError, match=r"linear_attention\w*: encoding must be None or a callable"):
                fn(q, k, v, **options)
    else:  # a valid scale still works: twice the default scale is the default on 2q
        torch.testing.assert_close(A.softmax_attention(q, k, v, scale=2 / math.sqrt(D)), A.softmax_attention(2 * q, k, v))


def test_encoding_class_instead_of_instance_is_named():
    """A class is callable, so it passed the check and failed inside with "takes 2 positional arguments"."""
    q, k, v = _qkv(4)
    for fn in (A.softmax_attention, A.linear_attention, A.linear_attention_quadratic):
        with pytest.raises(ValueError, match=r"encoding must be an instance, such as ropebook.lrpe.Rotation\(d\), "
                                             r"not a class, got encoding=ropebook.lrpe.Rotation"):
            fn(q, k, v, encoding=lrpe.Rotation)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [2, 64])
def test_zero_denominator_raises_instead_of_nan(causal, chunk_size):
    """φ = relu of an all-negative row is all zeros: the output was NaN, with no error. The error names the
    first such query, in the chunked loop too (token 4 lies in the third chunk of 2)."""
    q, k, v = torch.ones(6, 8, dtype=torch.float64), torch.ones(6, 8, dtype=torch.float64), torch.randn(6, 3).double()
    out = A.linear_attention(q, k, v, causal=causal, feature_map="relu", chunk_size=chunk_size)
    torch.testing.assert_close(out, A.linear_attention_quadratic(q, k, v, causal=causal, feature_map="relu"))
    q[4] = -1.0  # φ(q_4) = 0
    for call in (lambda: A.linear_attention(q, k, v, causal=causal, feature_map="relu", chunk_size=chunk_size),
                 lambda: A.linear_attention_quadratic(q, k, v, causal=causal, feature_map="relu")):
        with pytest.raises(ValueError, match=r"linear_attention\w*: the denominator .* is 0 for the query at "
                                             r"token m=4 with feature_map='relu'"):
            call()
    torch.testing.assert_close(A.linear_attention(q, k, v, causal=causal, chunk_size=chunk_size),  # elu: positive
                               A.linear_attention_quadratic(q, k, v, causal=causal))
    empty = torch.zeros(0, 8, dtype=torch.float64)  # no tokens: no denominator to check, an empty output
    assert A.linear_attention(empty, empty, empty[:, :3], causal=causal, chunk_size=chunk_size).shape == (0, 3)


def test_bench_crossover_and_timing_shape():
    from ropebook import bench_linear

    r = bench_linear.time_attention([8, 16], repeats=1, heads=1, head_dim=8)
    assert set(bench_linear.IMPLEMENTATIONS) == {"linear", "softmax", "sdpa"}
    assert all(len(r[name]) == 2 and all(t > 0 for t in r[name]) for name in bench_linear.IMPLEMENTATIONS)
    assert bench_linear.crossover({"lengths": [1, 2], "linear": [5.0, 5.0], "softmax": [1.0, 2.0]}) is None
    result = {"lengths": [1, 2, 4], "linear": [5.0, 5.0, 5.0], "softmax": [1.0, 9.0, 9.0], "sdpa": [1.0, 2.0, 6.0]}
    assert bench_linear.crossover(result) == 2 and bench_linear.crossover(result, "sdpa") == 4
    with pytest.raises(ValueError, match="crossover: against must be 'softmax' or 'sdpa', got against='flash'"):
        bench_linear.crossover(result, "flash")
    with pytest.raises(ValueError, match="lengths must be positive"):
        bench_linear.time_attention([0])

