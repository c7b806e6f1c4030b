"""Tests for ropebook.crope (complex-linear attention), its checkers, figures and the offset toy task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ropebook as rb
from ropebook.checks import crope as crope_checks
from ropebook.crope import ComplexLinear, CRoPEAttention, RoPEAttention, parameter_count
from ropebook.experiments.offset_task import OffsetModel, constructed_offset_model, offset_accuracy, train_offset_model
from ropebook.model import ModelConfig, TinyLM

# (in_features, out_features, x shape prefix)
LINEAR_CASES = [(2, 2, (3,)), (4, 8, (2, 5)), (8, 6, (1, 2, 3)), (16, 16, (4, 7))]
# (dim, n_heads)
ATTENTION_CASES = [(8, 1), (16, 2), (32, 4), (64, 4)]
DTYPES = [torch.float32, torch.float64]
J = np.array([[0.0, -1.0], [1.0, 0.0]])


def _tol(dtype):
    eps = torch.finfo(dtype).eps
    return dict(rtol=100 * eps, atol=100 * eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_in, n_out, prefix", LINEAR_CASES)
def test_complex_linear_matches_numpy_complex_matmul(n_in, n_out, prefix, dtype):
    torch.manual_seed(0)
    layer = ComplexLinear(n_in, n_out).to(dtype)
    x = torch.randn(*prefix, n_in, dtype=dtype)
    expected = crope_checks.complex_linear_reference(x, layer.weight_real, layer.weight_imag)
    torch.testing.assert_close(layer(x), expected, **_tol(dtype))
    torch.testing.assert_close(layer(x), x @ layer.real_matrix().T, **_tol(dtype))


@pytest.mark.parametrize("n_in, n_out, prefix", LINEAR_CASES)
def test_real_matrix_blocks_commute_with_J_and_are_scaled_rotations(n_in, n_out, prefix):
    torch.manual_seed(1)
    M = ComplexLinear(n_in, n_out).real_matrix().detach().double().numpy()
    for j in range(n_out // 2):
        for k in range(n_in // 2):
            block = M[2 * j:2 * j + 2, 2 * k:2 * k + 2]
            np.testing.assert_allclose(block @ J, J @ block, atol=1e-12)
            assert np.linalg.det(block) >= 0  # a rotation times a scale: never a reflection


def test_complex_linear_commutes_with_multiplication_by_i():
    """Complex-linear means W(i x̃) = i W(x̃); a generic real matrix fails this."""
    torch.manual_seed(2)
    layer = ComplexLinear(8, 8).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    times_i = lambda v: torch.stack((-v[..., 1::2], v[..., 0::2]), dim=-1).flatten(-2)  # noqa: E731
    torch.testing.assert_close(layer(times_i(x)), times_i(layer(x)))
    real = torch.nn.Linear(8, 8, bias=False).double()
    assert not torch.allclose(real(times_i(x)), times_i(real(x)))


def test_complex_weight_is_the_matrix_forward_multiplies_by():
    """complex_weight W = A + iB is the map forward applies: y = W x̃ in complex arithmetic (not its conjugate)."""
    torch.manual_seed(6)
    layer = ComplexLinear(8, 6).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    z = torch.view_as_complex(x.reshape(4, 4, 2))  # (4, in/2)
    torch.testing.assert_close(layer(x), torch.view_as_real(z @ layer.complex_weight.T).flatten(-2))
    assert not torch.allclose(layer(x), torch.view_as_real(z @ layer.complex_weight.conj().T).flatten(-2))


def test_init_gives_the_output_variance_of_nn_linear():
    """"Same per-entry range as nn.Linear(in, out): Re y_j then has the variance a real layer gives."

    For x ~ N(0, I), Var(Re y_j) = Σ_k (A_jk² + B_jk²) over in/2 columns and Var(y_j) = Σ_k W_jk² over in
    columns for nn.Linear; with entries uniform on ±1/√in both have expectation in · (1/in)/3 = 1/3. The
    tolerance is six standard errors of the mean over rows, estimated from the rows themselves.
    """
    torch.manual_seed(7)
    D = 512
    layer, real = ComplexLinear(D, D), torch.nn.Linear(D, D, bias=False)
    with torch.no_grad():
        complex_var = (layer.weight_real**2 + layer.weight_imag**2).sum(-1).double()  # (D/2,) Var Re y_j per row
        real_var = (real.weight**2).sum(-1).double()  # (D,) Var y_j per row
    for var in (complex_var, real_var):
        sem = float(var.std() / math.sqrt(len(var)))
        assert abs(float(var.mean()) - 1 / 3) < 6 * sem, (float(var.mean()), sem)


@pytest.mark.parametrize("dim, n_heads", ATTENTION_CASES)
def test_parameter_counts_match_the_formulas(dim, n_heads):
    crope, rope = CRoPEAttention(dim, n_heads), RoPEAttention(dim, n_heads)
    assert parameter_count(crope.q_proj) == dim * dim // 2
    qkv = lambda a: sum(parameter_count(p) for p in (a.q_proj, a.k_proj, a.v_proj))  # noqa: E731
    assert qkv(rope) == 3 * dim * dim and qkv(crope) == 3 * dim * dim // 2
    assert parameter_count(rope) == 4 * dim * dim
    assert parameter_count(crope) == 3 * dim * dim // 2 + dim * dim
    assert 1 - qkv(crope) / qkv(rope) == 0.5
    assert 1 - parameter_count(crope) / parameter_count(rope) == 0.375


@pytest.mark.parametrize("mlp_ratio", [1, 2, 4])
def test_layer_saving_matches_the_checker_reference(mlp_ratio):
    counts = {}
    for position in ("rope", "crope"):
        block = TinyLM(ModelConfig(dim=32, n_heads=2, n_layers=1, position=position, mlp_ratio=mlp_ratio)).blocks[0]
        counts[position] = parameter_count(block.attn) + parameter_count(block.mlp)
    saving = 1 - counts["crope"] / counts["rope"]
    assert math.isclose(saving, crope_checks.layer_saving_reference(mlp_ratio), rel_tol=1e-12)
    if mlp_ratio == 4:
        assert saving == 0.125


@pytest.mark.parametrize("dim, n_heads", ATTENTION_CASES)
def test_crope_equals_rope_attention_with_the_equivalent_real_weights(dim, n_heads):
    """CRoPE is RoPE attention restricted to complex-linear projections (complex form = real form)."""
    torch.manual_seed(3)
    crope = CRoPEAttention(dim, n_heads).double()
    rope = RoPEAttention(dim, n_heads).double()
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            getattr(rope, name).weight.copy_(getattr(crope, name).real_matrix())
        rope.out_proj.weight.copy_(crope.out_proj.weight)
    x = torch.randn(2, 9, dim, dtype=torch.float64)
    torch.testing.assert_close(crope(x), rope(x))
    torch.testing.assert_close(crope.scores(x), rope.scores(x))


def test_score_is_real_part_of_complex_form_and_depends_on_offset_only():
    """q_m·k_n = Re[Σ_j q̃_j conj(k̃_j) e^{i(m−n)θ_j}]: shifting every position leaves the scores unchanged."""
    torch.manual_seed(4)
    attn = CRoPEAttention(16, 1).double()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    pos = torch.arange(6)
    torch.testing.assert_close(attn.scores(x, pos), attn.scores(x, pos + 37))
    q, k = attn.q_proj(x)[0], attn.k_proj(x)[0]  # (T, D)
    qc, kc = torch.complex(q[:, 0::2], q[:, 1::2]), torch.complex(k[:, 0::2], k[:, 1::2])  # (T, D/2)
    theta = rb.rope_frequencies(16)  # (D/2,)
    offset = (pos[:, None] - pos[None, :]).double()  # (T, T): m − n
    phase = torch.polar(torch.ones(6, 6, 8, dtype=torch.float64), offset[..., None] * theta)
    expected = (qc[:, None, :] * kc.conj()[None, :, :] * phase).sum(-1).real / 4.0  # / √head_dim
    torch.testing.assert_close(attn.scores(x, pos)[0, 0], expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_is_causal_and_keeps_dtype(dtype):
    torch.manual_seed(5)
    attn = CRoPEAttention(16, 2).to(dtype)
    x = torch.randn(1, 7, 16, dtype=dtype)
    y = attn(x)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 3, 16, dtype=dtype)
    assert y.dtype == dtype
    torch.testing.assert_close(attn(x2)[:, :4], y[:, :4], **_tol(dtype))
    assert not torch.allclose(attn(x2)[:, 4:], y[:, 4:])


BAD_INPUTS = [
    (lambda: ComplexLinear(3, 4), "in_features must be a positive even integer, got in_features=3"),
    (lambda: ComplexLinear(4, 0), "out_features must be a positive even integer, got out_features=0"),
    (lambda: ComplexLinear(4, 4)(torch.randn(2, 6)), "expected x.shape[-1]=4, got x.shape=(2, 6)"),
    # F.linear failed with "expected m1 and m2 to have the same dtype", which names no argument
    (lambda: ComplexLinear(4, 4)(torch.randn(2, 4, dtype=torch.float64)),
     "ComplexLinear: x must have the weights' dtype torch.float32 (convert the module with .to(dtype), or x), "
     "got x.dtype=torch.float64"),
    (lambda: ComplexLinear(4, 4).double()(torch.randn(2, 4)), "weights' dtype torch.float64"),
    (lambda: CRoPEAttention(12, 4), "dim/n_heads even, got dim=12, n_heads=4"),
    (lambda: RoPEAttention(16, 2)(torch.randn(2, 16)), "expected x of shape (B, T, 16), got x.shape=(2, 16)"),
]


@pytest.mark.parametrize("make, message", BAD_INPUTS)
def test_bad_input_names_argument_expected_and_actual(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)


def test_complex_linear_takes_other_dtypes_under_autocast():
    """Autocast casts per op, so x of another dtype than the weights is fine there (as in the attention modules)."""
    layer = ComplexLinear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 4, dtype=torch.bfloat16)).shape == (2, 4)


@pytest.mark.parametrize("cls", [RoPEAttention, CRoPEAttention])
def test_scores_checks_x_like_forward(cls):
    attn = cls(16, 2)
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.scores: expected x of shape \(B, T, 16\), got x.shape=\(3, 16\)"):
        attn.scores(torch.randn(3, 16))
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.forward: expected x of shape \(B, T, 16\), got x.shape=\(1, 3, 8\)"):
        attn(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match=rf"{cls.__name__}: base must be a finite number > 1, got base=-1\.0"):
        cls(16, 2, base=-1.0)


def test_constructed_offset_model_solves_the_task():
    for n_content in (4, 8):
        model = constructed_offset_model(n_content)
        assert offset_accuracy(model, n_content=n_content, seq_len=16, seed=0) == 1.0
        tokens, pos = torch.tensor([[0, n_content, 1, 2, 3, 0], [n_content + 1, 3, 2, 1, 0, 1]]), torch.tensor([1, 0])
        w = model.marker_attention(tokens, pos)  # (2, T)
        assert w.argmax(-1).tolist() == [2, 2]  # NEXT at 1 → 2; NEXT2 at 0 → 2


def test_training_finds_a_solution_and_no_position_cannot():
    torch.manual_seed(0)
    model = OffsetModel(6, 32, position="crope")
    train_offset_model(model, steps=150, seed=0)
    assert offset_accuracy(model, n_content=6, seq_len=16, seed=1) > 0.95
    torch.manual_seed(0)
    blind = OffsetModel(6, 32, position="none")
    train_offset_model(blind, steps=150, seed=0)
    assert offset_accuracy(blind, n_content=6, seq_len=16, seed=1) < 0.6  # no position: it can only guess from counts


def test_checkers_accept_the_reference_and_reject_wrong_answers():
    assert crope_checks.check_complex_part(crope_checks.complex_part_reference).passed
    assert not crope_checks.check_complex_part(lambda M: M.T).passed
    assert "not implemented" in crope_checks.check_complex_part(lambda M: (_ for _ in ()).throw(NotImplementedError())).message
    assert rb.checks.check_complex_linear(crope_checks.complex_linear_reference).passed
    conj = lambda x, a, b: crope_checks.complex_linear_reference(x, a, -b)  # noqa: E731  (W̄ instead of W)
    assert not rb.checks.check_complex_linear(conj).passed
    real_only = lambda x, a, b: crope_checks.complex_linear_reference(x, a, 0 * b)  # noqa: E731
    assert not rb.checks.check_complex_linear(real_only).passed
    assert rb.checks.check_layer_saving(crope_checks.layer_saving_reference).passed
    assert not rb.checks.check_layer_saving(lambda r: 1.5 / (4 + 2 * r) / 2).passed
    assert not rb.checks.check_layer_saving(lambda r: 3 / (4 + 4 * r)).passed


def test_figures_build_with_white_face():
    fig = rb.plotting.offset_task_figure({"crope": [2.0, 0.5, 0.01]}, {"NEXT": ([0, 1, 2], [0.0, 1.0, 0.0])}, chance=math.log(6))
    assert fig.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
    runs = [{"position": p, "seed": s, "parameters": {"total": 10 + s}, "final_val_loss": 2.0 + s, "val_steps": [1, 2],
             "val_loss": [3.0, 2.0 + s], "train_loss": [3.0, 2.5, 2.0]} for p in ("rope", "crope") for s in (0, 1, 2)]
    summary = rb.plotting.summarize_comparison({"runs": runs})
    assert summary["rope"]["mean"] == 3.0 and summary["rope"]["std"] == 1.0
    assert rb.plotting.comparison_figure({"runs": runs}, smooth=2).get_facecolor() == (1.0, 1.0, 1.0, 1.0)


@settings(max_examples=25, deadline=None)
@given(half=st.integers(1, 8), n_heads=st.sampled_from([1, 2]), shift=st.integers(-500, 500), seed=st.integers(0, 2**16))
def test_property_crope_scores_depend_on_offset_only_and_projection_is_complex_linear(half, n_heads, shift, seed):
    dim = 2 * half * n_heads
    torch.manual_seed(seed)
    attn = CRoPEAttention(dim, n_heads).double()
    x = torch.randn(1, 5, dim, dtype=torch.float64)
    pos = torch.arange(5)
    torch.testing.assert_close(attn.scores(x, pos), attn.scores(x, pos + shift), rtol=1e-9, atol=1e-9)
    w = complex(*torch.randn(2, dtype=torch.float64).tolist())  # any complex scalar
    z = torch.view_as_complex(x.reshape(1, 5, -1, 2))
    scaled = torch.view_as_real(w * z).flatten(-2)  # w·x̃ as a real tensor
    out = torch.view_as_complex(attn.q_proj(x).reshape(1, 5, -1, 2))
    torch.testing.assert_close(torch.view_as_complex(attn.q_proj(scaled).reshape(1, 5, -1, 2)), w * out)


@pytest.mark.parametrize("cls", [RoPEAttention, CRoPEAttention])
def test_attention_takes_one_row_of_positions_per_sequence(cls):
    """(B, T) positions went to q of (B, H, T, hd) unchanged: with B = H each head read a batch row's positions,
    silently; with B ≠ H the error named apply_rope and a shape the caller never passed."""
    torch.manual_seed(0)
    m = cls(16, 2)
    x = torch.randn(2, 5, 16)
    positions = torch.stack([torch.arange(5), torch.tensor([0, 3, 4, 9, 20])])  # (B, T), B = H = 2
    torch.testing.assert_close(m(x, positions), torch.cat([m(x[b:b + 1], positions[b]) for b in range(2)]))
    torch.testing.assert_close(m.scores(x, positions), torch.cat([m.scores(x[b:b + 1], positions[b]) for b in range(2)]))
    with pytest.raises(ValueError, match=rf"{cls.__name__}.forward: positions must have shape \(T,\)=\(5,\) or \(B, T\)=\(3, 5\) "
                                         r"for x.shape=\(3, 5, 16\), got positions.shape=\(2, 5\)"):
        m(torch.randn(3, 5, 16), positions)
    with pytest.raises(ValueError, match=r"positions must have shape"):  # checked with rope=False too
        cls(16, 2, rope=False)(x, torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"{cls.__name__}.forward: x must have the weights' dtype torch.float32 .* got x.dtype=torch.float64"):
        m(x.double())
    assert cls(16, np.int64(2)).n_heads == 2
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts per op: bf16 in is not a mismatch there
        assert m(x.bfloat16()).shape == x.shape
