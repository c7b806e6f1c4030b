"""ropebook.reference: the numpy oracle checked against the maths it writes out (not against the fast code)."""

from __future__ import annotations

import numpy as np
import pytest

from ropebook import reference, scaling

# (dim, base, layout)
MATRIX_CASES = [(2, 10000.0, "half"), (8, 10000.0, "half"), (8, 10000.0, "interleaved"), (16, 100.0, "interleaved")]


def test_frequencies_formula():
    np.testing.assert_allclose(reference.rope_frequencies(6, base=10000.0), [1.0, 10000.0 ** (-1 / 3), 10000.0 ** (-2 / 3)])
    np.testing.assert_allclose(reference.rope_frequencies(8, scaling=scaling.Linear(2.0)),
                               reference.rope_frequencies(8) / 2)
    with pytest.raises(ValueError, match="dim must be a positive even integer, got dim=5"):
        reference.rope_frequencies(5)


def test_rotation_matrix_algebra():
    a, b = 0.7, -2.1
    R = reference.rotation_matrix_2d
    np.testing.assert_allclose(R(a) @ R(b), R(a + b), atol=1e-15)
    np.testing.assert_allclose(R(a).T, R(-a), atol=1e-15)
    np.testing.assert_allclose(R(a).T @ R(a), np.eye(2), atol=1e-15)
    np.testing.assert_allclose(R(np.pi / 2) @ [1.0, 0.0], [0.0, 1.0], atol=1e-15)


@pytest.mark.parametrize("dim, base, layout", MATRIX_CASES)
def test_rope_matrix_structure_and_relative_identity(dim, base, layout):
    m, n = 5, 12
    Rm = reference.rope_matrix(m, dim, base=base, layout=layout)
    Rn = reference.rope_matrix(n, dim, base=base, layout=layout)
    np.testing.assert_allclose(Rm.T @ Rm, np.eye(dim), atol=1e-13)  # orthogonal
    np.testing.assert_allclose(Rm.T @ Rn, reference.rope_matrix(n - m, dim, base=base, layout=layout), atol=1e-12)  # R_mᵀR_n = R_{n−m}
    theta = reference.rope_frequencies(dim, base=base)
    for i in range(dim // 2):
        a, b = reference.pair_indices(i, dim, layout)
        np.testing.assert_allclose(Rm[np.ix_([a, b], [a, b])], reference.rotation_matrix_2d(m * theta[i]))
    assert np.count_nonzero(np.abs(Rm) > 0) <= 2 * dim  # only the 2×2 blocks


def test_interleaved_matrix_is_block_diagonal_and_half_is_its_permutation():
    dim = 8
    Ri = reference.rope_matrix(3, dim, layout="interleaved")
    for i in range(dim // 2):
        for j in range(dim // 2):
            block = Ri[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            assert (i == j) or not block.any()
    p = np.concatenate([np.arange(0, dim, 2), np.arange(1, dim, 2)])  # x_half = x_interleaved[p]
    np.testing.assert_allclose(reference.rope_matrix(3, dim, layout="half"), Ri[np.ix_(p, p)])


def test_apply_rope_reference_by_hand():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])  # one token at position 2, pairs (1, 3) and (2, 4) in the half layout
    y = reference.apply_rope_reference(x, [2], base=100.0)
    t0, t1 = 2 * 1.0, 2 * 0.1
    expected = [1 * np.cos(t0) - 3 * np.sin(t0), 2 * np.cos(t1) - 4 * np.sin(t1),
                1 * np.sin(t0) + 3 * np.cos(t0), 2 * np.sin(t1) + 4 * np.cos(t1)]
    np.testing.assert_allclose(y[0], expected, rtol=1e-15)
    yi = reference.apply_rope_reference(x, [2], base=100.0, layout="interleaved")  # pairs (1, 2) and (3, 4)
    np.testing.assert_allclose(yi[0], [np.cos(t0) - 2 * np.sin(t0), np.sin(t0) + 2 * np.cos(t0),
                                       3 * np.cos(t1) - 4 * np.sin(t1), 3 * np.sin(t1) + 4 * np.cos(t1)])


def test_apply_rope_reference_options():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 8))
    y = reference.apply_rope_reference(x, rotary_dim=4)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])  # pass-through features
    assert y.shape == x.shape and y.dtype == np.float64
    np.testing.assert_allclose(reference.apply_rope_reference(x, np.zeros(5)), x)  # position 0 is the identity
    per_row = np.arange(5) + np.array([0, 7])[:, None, None]  # (2, 1, 5): a different offset per batch row
    np.testing.assert_allclose(reference.apply_rope_reference(x, per_row)[1], reference.apply_rope_reference(x[1], np.arange(7, 12)))
    inv = reference.rope_frequencies(8) / 3
    np.testing.assert_allclose(reference.apply_rope_reference(x, inv_freq=inv),
                               reference.apply_rope_reference(x, scaling=scaling.Linear(3.0)), atol=1e-14)
    np.testing.assert_allclose(reference.apply_rope_reference(x, attention_factor=2.0), 2 * reference.apply_rope_reference(x))
    np.testing.assert_allclose(np.linalg.norm(reference.apply_rope_reference(x, scaling=scaling.YaRN(4.0, 8)), axis=-1),
                               scaling.YaRN(4.0, 8).attention_factor * np.linalg.norm(x, axis=-1))


# (call, pattern): the checks the torch path makes (ropebook.rope), named after the reference function
BAD_INPUTS = [
    (lambda: reference.rope_frequencies(8, base=-1.0), r"reference\.rope_frequencies: base must be a finite number > 1, got base=-1\.0"),
    (lambda: reference.rope_frequencies(4.0), r"reference\.rope_frequencies: dim must be a positive even integer, got dim=4\.0"),
    (lambda: reference.apply_rope_reference(np.ones((3, 4)), base=-1.0), r"apply_rope_reference: base must be a finite number > 1, got base=-1\.0"),
    (lambda: reference.apply_rope_reference(np.ones((3, 4)), [0.0, np.nan, 2.0]), r"apply_rope_reference: positions must be finite, got nan"),
    (lambda: reference.apply_rope_reference(np.ones((3, 4)), [0, 1j, 2]), r"apply_rope_reference: positions must be integers or real floats, got positions.dtype="),
    (lambda: reference.apply_rope_reference(np.ones((3, 8)), rotary_dim=10), r"apply_rope_reference: rotary_dim must be at most head_dim=8, got rotary_dim=10"),
    (lambda: reference.apply_rope_reference(np.ones((3, 8)), rotary_dim=3), r"apply_rope_reference: rotary_dim must be a positive even integer, got rotary_dim=3"),
    (lambda: reference.apply_rope_reference(np.ones((3, 8)), np.arange(5)), r"apply_rope_reference: positions must broadcast to x.shape\[:-1\]=\(3,\), got positions.shape=\(5,\)"),
    (lambda: reference.apply_rope_reference(np.ones(8)), r"apply_rope_reference: x must be .* of shape \(\.\.\., T, D\), got x.shape=\(8,\)"),
    (lambda: reference.apply_rope_reference(np.ones((3, 5))), r"apply_rope_reference: head_dim must be even, got x.shape=\(3, 5\)"),
    (lambda: reference.apply_rope_reference(np.ones((3, 4)), layout="neox"), r"apply_rope_reference: layout must be one of .* got layout='neox'"),
    (lambda: reference.apply_rope_reference(np.ones((3, 4)), attention_factor=np.nan), r"apply_rope_reference: attention_factor must be .* got attention_factor=nan"),
    (lambda: reference.rope_matrix(1, 4, layout="neox"), r"rope_matrix: layout must be one of .* got layout='neox'"),
]


@pytest.mark.parametrize("make, pattern", BAD_INPUTS)
def test_bad_input_names_function_argument_and_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_positions_keep_their_float64_values():
    x = np.ones((2, 2))
    big = [0.0, 2.0**40 + 0.5]  # not a float32 number: the checks must not round the positions
    y = reference.apply_rope_reference(x, big)
    np.testing.assert_array_equal(y[1], reference.rope_matrix(big[1], 2) @ x[1])
