"""The checker machinery: right answers pass, wrong and malformed ones fail with a message, nothing raises."""

import numpy as np
import pytest
import sympy as sp
import torch

from ropebook.checks import Case, CheckResult, check_function, check_sympy_equal


def reference(x):
    return 2 * x


CASES = [Case((torch.arange(6, dtype=torch.float32).reshape(2, 3),), label="x.shape=(2, 3)")]

# (answer, words the message must contain)
WRONG = [
    (lambda x: 3 * x, ["entries differ", "yours", "expected"]),
    (lambda x: (2 * x).T, ["wrong shape", "(3, 2)", "(2, 3)"]),
    (lambda x: (2 * x).double(), ["wrong dtype", "float64", "float32"]),
    (lambda x: (2 * x).numpy(), ["expected a torch.Tensor", "ndarray"]),
    (lambda x: None, ["returned None"]),
    (lambda x: 1 / 0, ["raised ZeroDivisionError"]),
    (lambda x: (_ for _ in ()).throw(NotImplementedError()), ["not implemented yet"]),
    (lambda x: 2 * x + float("nan"), ["NaN"]),
    (42, ["expected a function", "int"]),
]


def test_right_answer_passes():
    result = check_function("double", lambda x: x + x, reference, CASES)
    assert result.passed and bool(result) and result.message.startswith("Correct")
    assert result.assert_passed() is result


@pytest.mark.parametrize("answer, words", WRONG)
def test_wrong_and_malformed_answers_fail_clearly(answer, words):
    result = check_function("double", answer, reference, CASES)
    assert isinstance(result, CheckResult) and not result.passed
    assert result.message.startswith("✗ double")
    for word in words:
        assert word in result.message, f"{word!r} missing from: {result.message}"
    with pytest.raises(AssertionError, match="double"):
        result.assert_passed()


def test_tuple_results_and_numbers_are_compared_item_by_item():
    cases = [Case((np.array([1.0, 2.0]),))]
    pair = lambda x: (x.sum(), x * 2)  # noqa: E731
    assert check_function("pair", pair, pair, cases).passed
    result = check_function("pair", lambda x: (x.sum() + 1, x * 2), pair, cases)
    assert not result.passed and "item 0" in result.message


def test_inputs_are_copied_so_a_mutating_answer_cannot_corrupt_the_reference():
    def mutate(x):
        x.mul_(2)
        return x

    assert check_function("double", mutate, reference, CASES).passed
    assert torch.equal(CASES[0].args[0], torch.arange(6, dtype=torch.float32).reshape(2, 3))


a, b = sp.symbols("a b", real=True)


@pytest.mark.parametrize(
    "answer, passed, words",
    [
        (sp.cos(a) * sp.cos(b) - sp.sin(a) * sp.sin(b), True, ["Correct"]),
        (sp.cos(a) * sp.cos(b), False, ["not identically equal"]),
        (None, False, ["got None"]),
        (torch.ones(2), False, ["expected a sympy expression", "Tensor"]),
        ([1, 2], False, ["expected a sympy expression", "list"]),
        ("cos(a + b)", False, ["expected a sympy expression", "str"]),
        (sp.Matrix([sp.cos(a + b)]), False, ["expected a scalar expression"]),
    ],
)
def test_sympy_checker(answer, passed, words):
    result = check_sympy_equal("angle_sum", answer, sp.cos(a + b))
    assert result.passed is passed
    for word in words:
        assert word in result.message


def test_sympy_checker_matrices():
    R = lambda t: sp.Matrix([[sp.cos(t), -sp.sin(t)], [sp.sin(t), sp.cos(t)]])  # noqa: E731
    assert check_sympy_equal("RaRb", R(a) * R(b), R(a + b)).passed
    assert not check_sympy_equal("RaRb", R(a) * R(b), R(a - b)).passed
    result = check_sympy_equal("RaRb", sp.Matrix([1, 2]), R(a))
    assert not result.passed and "wrong shape" in result.message
