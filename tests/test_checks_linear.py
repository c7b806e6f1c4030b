"""The linear-attention checkers pass the solutions and catch wrong answers without raising."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ropebook as rb
from ropebook.checks import linear as L


def causal_recurrence(q, k, v):  # the chapter's solution: O(1) state per step
    phi = lambda x: torch.nn.functional.elu(x) + 1  # noqa: E731
    S = torch.zeros(q.shape[-1], v.shape[-1], dtype=q.dtype)
    z = torch.zeros(q.shape[-1], dtype=q.dtype)
    out = torch.empty(v.shape, dtype=q.dtype)
    for t in range(q.shape[0]):
        S, z = S + torch.outer(phi(k[t]), v[t]), z + phi(k[t])
        out[t] = phi(q[t]) @ S / (phi(q[t]) @ z)
    return out


def permutation_power(perm, m):
    P = np.eye(len(perm))[perm]
    return np.linalg.matrix_power(P if m >= 0 else P.T, abs(m))


def permutation_period(perm):
    lengths, seen = [], set()
    for start in range(len(perm)):
        j, n = start, 0
        while j not in seen:
            seen.add(j)
            j, n = perm[j], n + 1
        if n:
            lengths.append(n)
    return math.lcm(*lengths)


WRONG = {  # checker: (right answer, wrong answers)
    L.check_causal_linear_attention: (causal_recurrence, [
        lambda q, k, v: rb.attention.linear_attention(q, k, v, causal=False),  # not causal
        lambda q, k, v: rb.attention.linear_attention(q, k, v, causal=True, feature_map="relu"),  # other φ
        lambda q, k, v: causal_recurrence(q, k, v).float(),  # wrong dtype
        lambda q, k, v: None,
        lambda q, k, v: 1 / 0,
    ]),
    L.check_permutation_power: (permutation_power, [
        lambda perm, m: np.linalg.matrix_power(np.eye(len(perm))[perm].T, m % 7),  # transposed
        lambda perm, m: np.linalg.matrix_power(np.eye(len(perm))[perm], abs(m)),  # sign of m dropped
        # Πᵀ for every negative m: right at m = −1 only (the reviewer's answer, which passed 6 cases with one m < 0)
        lambda perm, m: np.linalg.matrix_power(np.eye(len(perm))[perm], m) if m >= 0 else np.eye(len(perm))[perm].T,
    ]),
    L.check_permutation_period: (permutation_period, [
        lambda perm: len(perm),  # d is not the period
        lambda perm: math.prod(1 for _ in perm),
    ]),
}


@pytest.mark.parametrize("checker", WRONG, ids=lambda c: c.__name__)
def test_checker_passes_solution_and_rejects_wrong_answers(checker):
    right, wrongs = WRONG[checker]
    result = checker(right)
    assert result.passed, result.message
    assert str(result).startswith("Correct")
    for wrong in wrongs:
        result = checker(wrong)
        assert not result.passed and "✗" in result.message, result.message


def test_unimplemented_stub_is_reported():
    def stub(*args):
        raise NotImplementedError

    assert "not implemented yet" in L.check_permutation_period(stub).message


def test_reference_equals_package():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    enc = rb.lrpe.Permutation(4, seed=1)
    for causal in (False, True):
        np.testing.assert_allclose(L.linear_attention_reference(q, k, v, causal=causal, matrices=enc.matrix),
                                   rb.attention.linear_attention(q, k, v, causal=causal, encoding=enc).numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- regressions (review of the checkers)


def _power_by_loop(perm, m):
    """Starts from Π and multiplies |m| − 1 more times: right for m ≠ 0, Π instead of I for m = 0."""
    P = np.eye(len(perm))[perm]
    if m < 0:
        P, m = P.T, -m
    result = P
    for _ in range(m - 1):
        result = result @ P
    return result


def test_permutation_power_catches_the_off_by_one_at_m_zero():
    """No case had m = 0, so this loop passed."""
    result = L.check_permutation_power(_power_by_loop)
    assert not result.passed and "m=0" in result.message, result.message


def test_permutation_period_accepts_a_sympy_integer():
    """sympy's Permutation(perm).order() returns an Integer: refused as "expected a number, got Integer"."""
    from sympy.combinatorics import Permutation

    assert L.check_permutation_period(lambda perm: Permutation(perm).order()).passed
    assert L.check_permutation_period(lambda perm: np.int64(permutation_period(perm))).passed
    result = L.check_permutation_period(lambda perm: [permutation_period(perm)])
    assert not result.passed and "expected a number, got list" in result.message, result.message


def test_causal_linear_attention_accepts_a_numpy_answer():
    """The exercise names no output type (and the page's own oracle returns numpy): a float64 array is right."""
    assert L.check_causal_linear_attention(lambda q, k, v: causal_recurrence(q, k, v).numpy()).passed
    result = L.check_causal_linear_attention(lambda q, k, v: causal_recurrence(q, k, v).numpy().astype(np.float32))
    assert not result.passed and "wrong dtype: yours float32, expected float64" in result.message, result.message
    result = L.check_causal_linear_attention(lambda q, k, v: causal_recurrence(q, k, v).numpy()[:, :1])
    assert not result.passed and "wrong shape" in result.message, result.message
