"""The LRPE family: scores depend only on n − m, M_m unitary, M_m = M_1^m = P Λ^m Pᴴ, forward == matrix, errors."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ropebook as rb
from ropebook import lrpe

D = 8
MEMBERS = {
    "rotation": lambda: lrpe.Rotation(D),
    "rotation_interleaved": lambda: lrpe.Rotation(D, layout="interleaved", base=100.0),
    "permutation": lambda: lrpe.Permutation(D, seed=4),
    "dct": lambda: lrpe.Unitary(D, basis="dct"),
    "householder": lambda: lrpe.Unitary(D, basis="householder", seed=1),
    "learned_householder": lambda: lrpe.LearnedHouseholder(D, seed=2),
}
TOL64 = 64 * torch.finfo(torch.float64).eps  # a few ulps times the O(d) sums of a d×d product
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("name", MEMBERS)
@settings(max_examples=25, deadline=None)
@given(m=st.integers(-50, 50), n=st.integers(-50, 50), shift=st.integers(-1000, 1000), seed=st.integers(0, 2**16))
def test_score_depends_only_on_offset(name, m, n, shift, seed):
    """(M_m q)ᵀ(M_n k) through forward() equals qᵀ M_{n−m} k, and is unchanged when both positions shift."""
    enc = MEMBERS[name]()
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, D, generator=g, dtype=torch.float64)  # (T=1, D) each

    def score(a, b):
        return (enc(q, torch.tensor([a])) * enc(k, torch.tensor([b]))).sum().item()

    direct = q[0].numpy() @ enc.matrix(n - m) @ k[0].numpy()
    scale = float(q.norm() * k.norm())
    assert abs(score(m, n) - direct) <= 1e3 * TOL64 * scale
    # angles m·θ at |m| ≈ 1000 lose ~1000 ulps in float64: the bound follows the position size
    assert abs(score(m + shift, n + shift) - score(m, n)) <= (1e3 + abs(shift) + abs(m) + abs(n)) * TOL64 * scale


@pytest.mark.parametrize("name", MEMBERS)
def test_unitary_and_power_and_relative(name):
    enc = MEMBERS[name]()
    eye = np.eye(D)
    M1 = enc.matrix(1)
    for m in range(-6, 7):
        Mm = enc.matrix(m)
        np.testing.assert_allclose(Mm.T @ Mm, eye, atol=TOL64)  # unitary (real: orthogonal)
        np.testing.assert_allclose(Mm, np.linalg.matrix_power(M1, m), atol=TOL64 * (abs(m) + 1))  # M_m = M_1^m
        for n in range(-6, 7):
            np.testing.assert_allclose(Mm.T @ enc.matrix(n), enc.matrix(n - m), atol=TOL64)  # M_mᴴ M_n = M_{n−m}
    np.testing.assert_allclose(enc.matrix(0), eye, atol=TOL64)


@pytest.mark.parametrize("name", MEMBERS)
def test_eigendecomposition_has_unit_modulus_eigenvalues(name):
    """M_1 = P Λ Pᴴ with P unitary and |λ_j| = 1 (M_1 is normal, so a unitary P exists)."""
    M1 = MEMBERS[name]().matrix(1)
    lam, _ = np.linalg.eig(M1)
    np.testing.assert_allclose(np.abs(lam), np.ones(D), atol=1e-12)
    np.testing.assert_allclose(M1 @ M1.T, M1.T @ M1, atol=TOL64)  # normal
    # the Schur form of a normal matrix is diagonal, and its unitary factor is a valid P
    from scipy.linalg import schur

    T, Z = schur(M1.astype(complex), output="complex")
    np.testing.assert_allclose(T, np.diag(np.diag(T)), atol=1e-12)
    np.testing.assert_allclose(Z @ np.diag(np.diag(T) ** 5) @ Z.conj().T, MEMBERS[name]().matrix(5), atol=1e-12)


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_forward_equals_matrix(name, dtype, device):
    enc = MEMBERS[name]().to(device)
    positions = torch.tensor([0, 1, 5, -3, 17, 2], device=device)
    x = torch.randn(2, 3, 6, D, dtype=torch.float64, device=device)  # (B, H, T, D)
    y = enc(x.to(dtype), positions)
    assert y.shape == x.shape and y.dtype == dtype and y.device.type == device
    expected = np.stack([x[..., t, :].cpu().numpy() @ enc.matrix(int(p)).T for t, p in enumerate(positions.tolist())], axis=-2)
    eps = torch.finfo(dtype).eps
    np.testing.assert_allclose(y.detach().cpu().double().numpy(), expected, atol=64 * eps * float(x.abs().max()))


def test_rotation_is_apply_rope():
    x = torch.randn(3, 10, D)
    torch.testing.assert_close(lrpe.Rotation(D, layout="interleaved")(x), rb.apply_rope(x, layout="interleaved"), rtol=0, atol=0)


def test_permutation_period_is_lcm_of_cycles():
    perm = torch.tensor([1, 2, 0, 4, 3, 5, 7, 6])  # cycles of length 3, 2, 1, 2 → period 6
    enc = lrpe.Permutation(8, permutation=perm)
    eye = np.eye(8)
    powers = [p for p in range(1, 13) if np.array_equal(enc.matrix(p), eye)]
    assert powers == [6, 12]
    np.testing.assert_array_equal(enc.matrix(1), eye[perm.numpy()])
    np.testing.assert_array_equal(enc.matrix(-1), eye[perm.numpy()].T)


def test_dct_and_householder_are_orthogonal():
    for P in (lrpe.dct_matrix(16), lrpe.householder_matrix(torch.randn(16, dtype=torch.float64))):
        torch.testing.assert_close(P.T @ P, torch.eye(16, dtype=torch.float64), rtol=0, atol=TOL64 * 4)
    v = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(lrpe.householder_matrix(v) @ v, -v)  # flips v


def test_learned_householder_trains():
    enc = lrpe.LearnedHouseholder(D)
    before = enc.v.detach().clone()
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    x = torch.randn(5, D)
    (enc(x) ** 3).sum().backward()
    opt.step()
    assert not torch.equal(before, enc.v.detach())


BAD = [
    (lambda: lrpe.Rotation(7), r"Rotation: head_dim must be a positive even integer, got head_dim=7"),
    (lambda: lrpe.Unitary(6, basis="fourier"), r"basis must be 'dct', 'householder' or an orthogonal tensor, got basis='fourier'"),
    (lambda: lrpe.Unitary(4, basis=torch.ones(4, 4)), r"basis must be an orthogonal \(4, 4\) matrix"),
    (lambda: lrpe.Permutation(3, permutation=torch.tensor([0, 0, 1])), r"permutation must be a rearrangement of 0..2, got \[0, 0, 1\]"),
    (lambda: lrpe.householder_matrix(torch.zeros(3)), r"v must be a non-zero floating-point vector"),
    (lambda: lrpe.dct_matrix(0), r"dct_matrix: head_dim must be a positive even integer, got head_dim=0"),
    (lambda: lrpe.Rotation(4)(torch.randn(3, 6)), r"Rotation: x must be a floating-point tensor of shape \(\.\.\., T, 4\), got x.shape=\(3, 6\)"),
    (lambda: lrpe.Permutation(4)(torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0])), r"positions must be integers of shape \(T,\)=\(3,\)"),
    (lambda: lrpe.Unitary(4)(torch.randn(3, 4), torch.arange(4)), r"got positions.shape=\(4,\)"),
    # base and layout are checked when the member is built, not when M_m is (matrix() used to return cosh entries)
    (lambda: lrpe.Rotation(8, base=-1.0), r"Rotation: base must be a finite number > 1, got base=-1\.0"),
    (lambda: lrpe.Rotation(8, layout="neox"), r"Rotation: layout must be one of .* got layout='neox'"),
    (lambda: lrpe.Unitary(8, base=-1.0), r"Unitary: base must be a finite number > 1, got base=-1\.0"),
    (lambda: lrpe.LearnedHouseholder(8, base=float("nan")), r"LearnedHouseholder: base must be a finite number > 1, got base=nan"),
    (lambda: lrpe.Unitary(5), r"Unitary: head_dim must be a positive even integer, got head_dim=5"),
]


@pytest.mark.parametrize("make,pattern", BAD)
def test_bad_input(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_copy_experiment_is_seeded_and_checks_names():
    from ropebook.experiments import lrpe_recall as L

    cfg = L.TaskConfig(steps=3, seq_len=8, batch_size=4, eval_batches=1)
    first = L.run(cfg, encodings=("none", "permutation"), seeds=(0,))
    again = L.run(cfg, encodings=("none", "permutation"), seeds=(0,))
    assert [r["accuracy"] for r in first["runs"]] == [r["accuracy"] for r in again["runs"]]
    assert first["chance"] == 1 / cfg.vocab and first["config"]["offset"] == cfg.offset
    with pytest.raises(ValueError, match=r"encodings must be drawn from .*got 'alibi'"):
        L.run(cfg, encodings=("alibi",))


def test_copy_task_scores_the_token_k_places_back():
    """The logits at position t are scored against x_{t−k}: a model that outputs x_{t−k} is always right, one that
    echoes the current token x_t only where x_t happens to equal x_{t−k}."""
    from ropebook.experiments import lrpe_recall as L

    cfg = L.TaskConfig(offset=3, seq_len=16, batch_size=64)
    tokens, targets = L.copy_batch(cfg, torch.Generator().manual_seed(0))  # (B, T), (B, T − k)
    one_hot = lambda t: torch.nn.functional.one_hot(t, cfg.vocab).float()  # noqa: E731  (B, T, V) logits
    _, oracle = L._loss_acc(lambda t: one_hot(t.roll(cfg.offset, dims=1)), cfg, tokens, targets)  # x_{t−k} at t ≥ k
    _, echo = L._loss_acc(one_hot, cfg, tokens, targets)
    assert oracle == 1.0
    coincide = (tokens[:, cfg.offset:] == targets).float().mean().item()  # x_t = x_{t−k}: about 1/V
    assert echo == pytest.approx(coincide) and coincide < 0.5
