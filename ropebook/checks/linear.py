"""Checkers for the linear-attention chapter, and the slow numpy oracle they compare against.

- ``check_causal_linear_attention``: the causal recurrence (state S, z), no position encoding.
- ``check_permutation_power``: the LRPE member M_m = Π^m as a matrix.
- ``check_permutation_period``: the smallest p > 0 with Π^p = I.

``linear_attention_reference`` is the definition written as two loops in float64
numpy, with any d×d matrices M_m in the numerator: the tests use it as the oracle.

Chapter: ``ch-linear-attention``.
"""

from __future__ import annotations

import numpy as np
import torch

from ropebook.checks._core import Case, CheckResult, check_function

__all__ = ["linear_attention_reference", "check_causal_linear_attention", "check_permutation_power",
           "check_permutation_period"]


def _phi(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))  # 1 + elu(x)


def linear_attention_reference(q, k, v, *, causal: bool = False, matrices=None) -> np.ndarray:
    """out_m = Σ_n (M_m φ(q_m))ᵀ(M_n φ(k_n)) v_n / Σ_n φ(q_m)ᵀφ(k_n), n ≤ m if causal; float64.

    Args:
        q, k: ``(T, D)``; v: ``(T, Dv)``; arrays or tensors.
        matrices: a function m ↦ M_m (a (D, D) array), or None for M_m = I.

    >>> linear_attention_reference(np.zeros((3, 2)), np.zeros((3, 2)), np.arange(3.0)[:, None], causal=True).ravel()
    array([0. , 0.5, 1. ])
    """
    q, k, v = (np.asarray(t.detach().cpu().double() if isinstance(t, torch.Tensor) else t, dtype=np.float64) for t in (q, k, v))
    T = q.shape[0]
    out = np.zeros((T, v.shape[1]))
    for m in range(T):
        numerator, denominator = np.zeros(v.shape[1]), 0.0
        for n in range(m + 1 if causal else T):
            fq, fk = _phi(q[m]), _phi(k[n])
            eq, ek = (fq, fk) if matrices is None else (matrices(m) @ fq, matrices(n) @ fk)
            numerator += (eq @ ek) * v[n]
            denominator += fq @ fk
        out[m] = numerator / denominator
    return out


def _qkv_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for T, D, Dv in ((1, 2, 1), (5, 4, 3), (12, 8, 8), (9, 6, 2)):
        q, k, v = (torch.from_numpy(rng.standard_normal((T, n))) for n in (D, D, Dv))
        cases.append(Case((q, k, v), label=f"q.shape=({T}, {D}), v.shape=({T}, {Dv}), float64"))
    return cases


def check_causal_linear_attention(fn) -> CheckResult:
    """Check ``fn(q, k, v)`` = causal linear attention with φ = 1 + elu, no position encoding.

    Inputs are float64 tensors q, k ``(T, D)`` and v ``(T, Dv)``; the answer is a
    ``(T, Dv)`` float64 tensor (or numpy array: the exercise does not say which).

    (The examples here show wrong answers only: students open this text.)

    >>> import ropebook as rb
    >>> check_causal_linear_attention(lambda q, k, v: rb.attention.linear_attention(q, k, v, causal=False)).passed
    False
    """
    def reference(q, k, v):
        return torch.from_numpy(linear_attention_reference(q, k, v, causal=True))

    answer = fn
    if callable(fn):  # the exercise names no output type: a numeric numpy array (like the page's oracle's) is as good
        def answer(q, k, v):
            out = fn(q, k, v)
            return torch.from_numpy(out) if isinstance(out, np.ndarray) and out.dtype.kind in "fc" else out

    return check_function("causal_linear_attention", answer, reference, _qkv_cases(),
                          hint="keep S = Σ φ(k_n) v_nᵀ and z = Σ φ(k_n); update them before reading out token m; "
                               "no ε in the denominator (φ = 1 + elu is positive, and the check's tolerance is 1e-7).")


def _permutation_matrix(perm) -> np.ndarray:
    return np.eye(len(perm))[np.asarray(perm)]  # row j has its 1 in column π(j): (Π x)_j = x_{π(j)}


def _permutation_cases() -> list[Case]:
    # m = 0 (Π⁰ = I) catches a loop that starts from Π and multiplies m − 1 more times; m = −2 and −3 on cycles
    # longer than 3 catch an answer that returns Πᵀ (or Π^|m|) for every negative m
    perms = ([1, 2, 0], [1, 0, 3, 4, 2], [3, 0, 1, 2, 5, 4], [0, 1], [2, 4, 0, 1, 5, 3, 6], [3, 1, 0, 2],
             [1, 2, 3, 4, 5, 0], [4, 0, 1, 2, 3, 6, 5])
    ms = (2, 3, -1, 5, 7, 0, -2, -3)
    return [Case((list(p), m), label=f"perm={p}, m={m}") for p, m in zip(perms, ms)]


def check_permutation_power(fn) -> CheckResult:
    """Check ``fn(perm, m)`` = the (d, d) float64 array Π^m, where (Π x)_j = x_{perm[j]}; m may be negative.

    (The examples here show wrong answers only: students open this text.)

    >>> check_permutation_power(lambda perm, m: np.eye(len(perm))[perm]).passed  # Π, whatever m
    False
    """
    def reference(perm, m):
        return np.linalg.matrix_power(_permutation_matrix(perm), m)

    return check_function("permutation_power", fn, reference, _permutation_cases(),
                          hint="Π = np.eye(d)[perm]; a negative power is a power of Πᵀ = Π⁻¹.")


def check_permutation_period(fn) -> CheckResult:
    """Check ``fn(perm)`` = the smallest p > 0 with Π^p = I (an int).

    >>> check_permutation_period(lambda perm: 6 if len(perm) == 6 else None).passed
    False
    """
    def reference(perm):
        P, power, p = _permutation_matrix(perm), _permutation_matrix(perm), 1
        while not np.array_equal(power, np.eye(len(perm))):
            power, p = power @ P, p + 1
        return p

    cases = [Case((p,), label=f"perm={p}") for p, _ in (c.args for c in _permutation_cases())]
    return check_function("permutation_period", fn, reference, cases,
                          hint="follow each cycle j → perm[j] → …; the period is the lcm of the cycle lengths.")
