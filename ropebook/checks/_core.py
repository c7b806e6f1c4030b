"""The machinery every exercise checker shares: run cases, compare, explain.

A checker runs a reader's function on seeded cases, compares each answer with
the reference implementation and returns a :class:`CheckResult`. It never
raises on a wrong or malformed answer (wrong shape, wrong dtype, an exception,
``None``): the notebook keeps running and the reader sees a short diff.
Chapter-specific checkers (``check_rotate_2d`` and friends) are thin wrappers
that build :class:`Case` lists and call :func:`check_function`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp
import torch

__all__ = ["Case", "CheckResult", "check_function", "check_sympy_equal"]

# Default tolerances per dtype: (rtol, atol). They are torch.testing's defaults,
# which are a few units in the last place of each format: loose enough for a
# different but correct order of operations, tight enough to catch a wrong sign,
# a swapped pair or a missing factor.
_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7),
    "float32": (1.3e-6, 1e-5),
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "complex128": (1e-7, 1e-7),
    "complex64": (1.3e-6, 1e-5),
}


@dataclass(frozen=True)
class Case:
    """One input to a checker: positional and keyword arguments, and a label for messages."""

    args: tuple  # positional arguments passed to both functions
    kwargs: dict = field(default_factory=dict)  # keyword arguments passed to both
    label: str = ""  # what the reader sees about this input, e.g. "x.shape=(2, 8)"
    rtol: float | None = None  # this case's tolerances, where they differ from the checker's
    atol: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """What a checker found. Truthy when every case passed; shows as its message.

    >>> r = CheckResult(False, "✗ f: case 1/3: wrong shape")
    >>> bool(r), r
    (False, ✗ f: case 1/3: wrong shape)
    """

    passed: bool  # every case agreed with the reference
    message: str  # "Correct: ..." or a short diff

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def assert_passed(self) -> "CheckResult":
        """Raise ``AssertionError`` with the diff unless the check passed (for solution cells)."""
        if not self.passed:
            raise AssertionError(self.message)
        return self


def _short(value: Any, limit: int = 6) -> str:
    """A one-line preview of a value: type, shape, dtype and the first few entries (never raises)."""
    try:
        return _preview(value, limit)
    except Exception:  # a sparse tensor, an object whose repr fails...: name its type at least
        return f"<{type(value).__name__}>"


def _preview(value: Any, limit: int) -> str:
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)[:limit].cpu()
        more = ", ..." if value.numel() > limit else ""
        if value.dtype == torch.bool:
            entries = ", ".join(map(str, flat.tolist()))
        else:
            flat = flat.to(torch.float64 if not value.is_complex() else torch.complex128)
            entries = ", ".join(f"{v:.4g}" for v in flat.tolist())
        return f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).removeprefix('torch.')}, [{entries}{more}])"
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)[:limit]
        more = ", ..." if value.size > limit else ""
        entries = ", ".join(f"{v:.4g}" for v in flat.tolist()) if value.dtype.kind in "fciu" else ", ".join(map(str, flat))
        return f"array(shape={value.shape}, dtype={value.dtype}, [{entries}{more}])"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_short(v, limit=3) for v in value[:4])
        return f"{type(value).__name__}({inner}{', ...' if len(value) > 4 else ''})"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class ForbiddenCall(Exception):
    """Raised, while a checker runs the reader's function, by a library function the exercise forbids."""

    def __init__(self, names: Sequence[str]):
        super().__init__(", ".join(names))
        self.names = list(names)

    def message(self, name: str) -> str:
        which = " or ".join(f"ropebook's {n}" for n in self.names)
        return (f"✗ {name}: your function calls {which} (directly, or through another function), which the exercise "
                f"asks you not to use; write that part yourself")


def _forbidden_stub(*args, **kwargs):
    """The code every forbidden function runs while a check is under way. It runs with the globals of the function
    whose code it replaced, so it names nothing of this module but through the import (a builtin)."""
    __import__("ropebook.checks._core", fromlist=["_raise_forbidden"])._raise_forbidden()


def _raise_forbidden():
    raise ForbiddenCall(_FORBIDDEN_NOW)


_FORBIDDEN_NOW: list[str] = []  # the names the stub reports (it may have no closure: it replaces a function's code)


@contextlib.contextmanager
def forbid(functions: Sequence[Callable[..., Any]]):
    """While the block runs, each of ``functions`` raises :class:`ForbiddenCall` when called. Its code is swapped, not a
    module attribute, so a name the page imported with ``from ropebook... import`` is caught as well as ``rb.<name>``;
    the code is put back after, whatever happens. Plain Python functions only (no closure)."""
    saved = []
    try:
        for f in functions:
            if f.__closure__:
                raise ValueError(f"forbid: {f.__qualname__} has a closure; its code cannot be swapped")
            saved.append((f, f.__code__))
            f.__code__ = _forbidden_stub.__code__
        _FORBIDDEN_NOW[:] = [f.__name__ for f in functions]
        yield
    finally:
        for f, code in saved:
            f.__code__ = code
        _FORBIDDEN_NOW.clear()


def _changed_inputs(reference: Callable[..., Any], case: "Case", given: tuple, given_kw: dict) -> str | None:
    """The name of the first tensor or array argument the reader's function changed (``given`` is the copy it was
    called with, ``case`` holds the originals), or None. Named as the reference names its parameters."""
    try:
        names = list(inspect.signature(reference).parameters)
    except (TypeError, ValueError):
        names = []
    pairs = [(names[i] if i < len(names) else f"argument {i + 1}", a, b) for i, (a, b) in enumerate(zip(case.args, given))]
    pairs += [(k, case.kwargs[k], given_kw.get(k)) for k in case.kwargs]
    for label, before, after in pairs:
        if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
            same = before.shape == after.shape and before.dtype == after.dtype and bool(
                torch.equal(before, after) or (before.is_floating_point() and torch.allclose(before, after, rtol=0, atol=0, equal_nan=True)))
        elif isinstance(before, np.ndarray) and isinstance(after, np.ndarray):
            same = before.shape == after.shape and before.dtype == after.dtype and bool(
                np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"))
        else:
            continue
        if not same:
            return label
    return None


def _entries_differ(bad: int, total: int) -> str:
    """``"2 of 3 entries differ"``, ``"1 of 3 entries differs"``."""
    return f"{bad} of {total} entries {'differs' if bad == 1 else 'differ'}"


def _as_number(value: Any) -> complex | None:
    """``value`` as a complex number when it is one number (Python, numpy, sympy, Fraction, 0-d array or tensor)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 0:
            return None
        value = value.item()
    if isinstance(value, sp.Basic):
        if not value.is_number:  # an expression with free symbols
            return None
    elif isinstance(value, (str, bytes)) or not isinstance(value, numbers.Number):
        return None
    try:
        return complex(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _pair(yours: Any, expected: Any) -> tuple[str, str]:
    """Two numbers written with as many digits as it takes to tell them apart (up to 17)."""
    def fmt(v: Any, digits: int) -> str:
        v = complex(v)
        return f"{v.real:.{digits}g}" if v.imag == 0 else f"{v:.{digits}g}"

    for digits in (6, 9, 12, 17):
        a, b = fmt(yours, digits), fmt(expected, digits)
        if a != b:
            break
    return a, b


def _dtype_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(value.dtype).removeprefix("torch.")
    return str(value.dtype)


def _compare(yours: Any, expected: Any, rtol: float | None, atol: float | None) -> str | None:
    """Return ``None`` when ``yours`` matches ``expected``, else a short description of the problem."""
    if yours is None and expected is not None:
        return "your function returned None (is a `return` missing?)"
    if isinstance(expected, (tuple, list)):
        if not isinstance(yours, (tuple, list)) or len(yours) != len(expected):
            return f"expected a {type(expected).__name__} of {len(expected)} values, got {_short(yours)}"
        for i, (y, e) in enumerate(zip(yours, expected)):
            problem = _compare(y, e, rtol, atol)
            if problem:
                return f"item {i}: {problem}"
        return None
    if isinstance(expected, torch.Tensor) or isinstance(expected, np.ndarray):
        kind = "torch.Tensor" if isinstance(expected, torch.Tensor) else "numpy array"
        if not isinstance(yours, type(expected)):
            return f"expected a {kind}, got {type(yours).__name__}"
        if tuple(yours.shape) != tuple(expected.shape):
            return f"wrong shape: yours {tuple(yours.shape)}, expected {tuple(expected.shape)}"
        if _dtype_name(yours) != _dtype_name(expected):
            return f"wrong dtype: yours {_dtype_name(yours)}, expected {_dtype_name(expected)}"
        y = torch.as_tensor(yours).detach().cpu()
        e = torch.as_tensor(expected).detach().cpu()
        if e.dtype == torch.bool or not (e.is_floating_point() or e.is_complex()):
            wrong = (y != e).nonzero()
            if len(wrong):
                index = tuple(wrong[0].tolist())
                if not e.dim():
                    return f"yours {y.item()}, expected {e.item()}"
                return f"{_entries_differ(len(wrong), e.numel())}, first at index {index}: yours {y[index].item()}, expected {e[index].item()}"
            return None
        default_rtol, default_atol = _TOLERANCES.get(_dtype_name(expected), (1e-7, 1e-7))
        rtol = default_rtol if rtol is None else rtol
        atol = default_atol if atol is None else atol
        if torch.isnan(y).any() and not torch.isnan(e).any():
            return "your result contains NaN"
        close = torch.isclose(y, e, rtol=rtol, atol=atol, equal_nan=True)
        if not bool(close.all()):
            diff = (y.to(torch.complex128 if y.is_complex() else torch.float64) - e.to(torch.complex128 if e.is_complex() else torch.float64)).abs()
            index = tuple(int(i) for i in np.unravel_index(int(diff.reshape(-1).argmax()), tuple(e.shape))) if e.dim() else ()
            bad = int((~close).sum())
            y_at, e_at = _pair(y[index].item(), e[index].item())
            if not e.dim():  # one number: no count of entries, no index
                return f"yours {y_at}, expected {e_at}: they differ by {diff.max().item():.3g} (rtol={rtol:g}, atol={atol:g})"
            return (
                f"{_entries_differ(bad, e.numel())} (rtol={rtol:g}, atol={atol:g}); "
                f"largest difference {diff.max().item():.3g} at index {index}: "
                f"yours {y_at}, expected {e_at}"
            )
        return None
    if isinstance(expected, (bool, np.bool_)):
        if isinstance(yours, (torch.Tensor, np.ndarray)) and yours.ndim == 0:
            yours = yours.item()
        if not isinstance(yours, (bool, np.bool_, int, np.integer)):
            return f"expected True or False, got {_short(yours)}"
        if bool(yours) != bool(expected) or yours not in (0, 1):
            return f"yours {yours!r}, expected {bool(expected)}"
        return None
    if isinstance(expected, (int, float, complex, np.number)):
        value = _as_number(yours)
        if value is None:
            return f"expected a number, got {_short(yours)}"
        tol_r = 1e-9 if rtol is None else rtol
        tol_a = 1e-12 if atol is None else atol
        if not (abs(value - complex(expected)) <= tol_a + tol_r * abs(complex(expected))):
            y_text, e_text = _pair(value, expected)
            return f"yours {y_text}, expected {e_text}"
        return None
    try:
        same = bool(yours == expected)
    except Exception:  # an array or tensor of many values, where one value was expected
        same = False
    if not same:
        return f"yours {_short(yours)}, expected {_short(expected)}"
    return None


def check_function(
    name: str,
    fn: Any,
    reference: Callable[..., Any],
    cases: Sequence[Case],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    hint: str = "",
    forbidden: Sequence[Callable[..., Any]] = (),
) -> CheckResult:
    """Run ``fn`` and ``reference`` on every case and report the first disagreement.

    Args:
        name: the name the exercise asks the reader to define, used in messages.
        fn: the reader's function.
        reference: the trusted implementation (usually from ``ropebook.reference``).
        cases: the inputs, usually drawn from a seeded generator.
        rtol, atol: tolerances; by default they follow the expected result's dtype.
        hint: a sentence shown under a failure.
        forbidden: library functions the exercise asks the reader not to call; while ``fn`` runs, a call to any
            of them (however it was imported) ends the check with a message naming it (see :func:`forbid`).

    Returns:
        A :class:`CheckResult`: ``Correct: ...`` or ``✗ name: case i/n (label): problem``
        with ``yours:``/``expected:`` previews. It never raises on a wrong answer.

    >>> cases = [Case((np.arange(3.0),), label="x=[0, 1, 2]")]
    >>> check_function("double", lambda x: 2 * x, lambda x: x + x, cases)
    Correct: double agrees with the reference on all 1 cases.
    >>> print(check_function("double", lambda x: 3 * x, lambda x: x + x, cases))
    ✗ double: case 1/1 (x=[0, 1, 2]): 2 of 3 entries differ (rtol=1e-07, atol=1e-07); largest difference 2 at index (2,): yours 6, expected 4
      yours:    array(shape=(3,), dtype=float64, [0, 3, 6])
      expected: array(shape=(3,), dtype=float64, [0, 2, 4])
    """
    if not callable(fn):
        return CheckResult(False, f"✗ {name}: expected a function, got {type(fn).__name__} ({_short(fn)})")
    total = len(cases)
    changed = None  # the first input the reader's function wrote into, if any
    for i, case in enumerate(cases):
        where = f"case {i + 1}/{total}" + (f" ({case.label})" if case.label else "")
        expected = reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        given, given_kw = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
        try:
            with forbid(forbidden):
                yours = fn(*given, **given_kw)
        except ForbiddenCall as call:
            return CheckResult(False, call.message(name))
        except NotImplementedError:
            return CheckResult(False, f"✗ {name}: not implemented yet — replace the `raise NotImplementedError` line with your code.")
        except Exception as exc:  # the reader's code failed: report it, never re-raise
            return CheckResult(False, f"✗ {name}: {where}: your function raised {type(exc).__name__}: {exc}")
        changed = changed or _changed_inputs(reference, case, given, given_kw)
        try:
            problem = _compare(yours, expected, rtol if case.rtol is None else case.rtol,
                               atol if case.atol is None else case.atol)
        except Exception as exc:  # an answer of a kind the comparison did not foresee: report, never raise
            problem = f"could not compare your answer with the expected one ({type(exc).__name__}: {exc})"
        if problem:
            lines = [f"✗ {name}: {where}: {problem}"]
            shown = (_short(yours), _short(expected))
            if shown[0] != shown[1]:  # previews that look alike (the difference lies past them) would only confuse
                lines += [f"  yours:    {shown[0]}", f"  expected: {shown[1]}"]
            if hint:
                lines.append(f"  hint: {hint}")
            return CheckResult(False, "\n".join(lines))
    note = ""
    if changed:  # right values, but the caller's tensor rotated in place: in a model, a bug the result cannot show
        note = (f"\n  note: your function also changed its input {changed} in place; a caller that uses {changed} "
                f"again (q in a model, say) would see the rotated values")
    return CheckResult(True, f"Correct: {name} agrees with the reference on all {total} cases.{note}")


def check_sympy_equal(name: str, yours: Any, expected: Any, *, hint: str = "") -> CheckResult:
    """Check that a reader's sympy expression (or matrix) equals ``expected`` identically.

    Equality is decided by simplifying the difference (with trigonometric and
    complex simplification), so any algebraically equal form passes.

    >>> a, b = sp.symbols("a b", real=True)
    >>> check_sympy_equal("angle_sum", sp.cos(a) * sp.cos(b) - sp.sin(a) * sp.sin(b), sp.cos(a + b))
    Correct: angle_sum equals the expected expression.
    >>> check_sympy_equal("angle_sum", sp.cos(a) * sp.cos(b), sp.cos(a + b)).passed
    False
    """
    if yours is None:
        return CheckResult(False, f"✗ {name}: got None — assign your expression to `{name}`.")
    expected_s = sp.sympify(expected) if not isinstance(expected, sp.MatrixBase) else expected
    if isinstance(yours, sp.MatrixExpr) and not isinstance(yours, sp.MatrixBase):
        try:  # a BlockDiagMatrix, a product of MatrixSymbols...: its entries
            yours = yours.as_explicit()
        except Exception:
            pass
    if isinstance(expected_s, sp.MatrixBase):
        rows, cols = expected_s.shape
        if not isinstance(yours, sp.MatrixBase):
            return CheckResult(False, f"✗ {name}: expected a {rows}×{cols} sympy Matrix, got {type(yours).__name__}: "
                                      f"{_short(yours)} (build it with sp.Matrix(...))")
        yours_s = yours
        if yours_s.shape != expected_s.shape:
            return CheckResult(False, f"✗ {name}: wrong shape: yours {yours_s.shape}, expected {expected_s.shape}")
    else:
        try:
            yours_s = sp.sympify(yours, strict=True)
        except Exception:  # tensors, lists, strings...: say what was expected, never raise
            return CheckResult(False, f"✗ {name}: expected a sympy expression, got {type(yours).__name__}: {_short(yours)}")
        if isinstance(yours_s, sp.MatrixBase):
            return CheckResult(False, f"✗ {name}: expected a scalar expression, got a {yours_s.shape} Matrix")
        if isinstance(yours_s, sp.Equality):
            return CheckResult(False, f"✗ {name}: expected an expression, got an equation ({yours_s}); "
                                      "give only the side that is asked for")
        if not isinstance(yours_s, sp.Expr):  # sets, tuples, booleans, lists
            return CheckResult(False, f"✗ {name}: expected a sympy expression, got {type(yours).__name__}: {_short(yours)}")
    try:
        if isinstance(expected_s, sp.MatrixBase):
            difference = (yours_s - expected_s).applyfunc(_simplify_fully)
            zero = all(entry == 0 for entry in difference)
        else:
            zero = _simplify_fully(yours_s - expected_s) == 0
    except Exception as exc:  # entries sympy cannot subtract or simplify (strings, tensors, booleans)
        return CheckResult(False, f"✗ {name}: sympy could not compare your answer with the expected one "
                                  f"({type(exc).__name__}: {exc}); yours: {_short(yours_s)}")
    if zero:
        return CheckResult(True, f"Correct: {name} equals the expected expression.")
    lines = [f"✗ {name}: not identically equal to the expected expression", f"  yours:    {_clip(str(yours_s))}",
             f"  expected: {_clip(str(expected_s))}"]
    if hint:
        lines.append(f"  hint: {hint}")
    return CheckResult(False, "\n".join(lines))


def _clip(text: str, limit: int = 300) -> str:
    """A long expression cut to ``limit`` characters (an unsimplified 2×2 product printed 3,000 on one line)."""
    return text if len(text) <= limit else text[: limit - 30] + f" … ({len(text)} characters in all)"


def hide_expected(result: CheckResult, description: str, *, label: str = "expected") -> CheckResult:
    """``result`` with its ``expected:`` line replaced by ``label: description``, for a checker whose expected
    value is the exercise's answer (a failed check must not hand it over).

    >>> wrong = CheckResult(False, "\\n".join(["✗ f: wrong", "  yours:    1", "  expected: 2"]))
    >>> print(hide_expected(wrong, "an even number"))
    ✗ f: wrong
      yours:    1
      expected: an even number
    """
    if result.passed:
        return result
    lines = [f"  {label + ':':<10}{description}" if line.startswith("  expected:") else line
             for line in result.message.splitlines()]
    return CheckResult(False, "\n".join(lines))


def _simplify_fully(expr: sp.Expr) -> sp.Expr:
    """Simplify hard enough to decide trigonometric and complex identities used in the book."""
    expr = sp.simplify(sp.expand_complex(sp.expand(expr)))
    if expr != 0:
        expr = sp.simplify(sp.trigsimp(sp.expand_trig(expr)))
    return sp.Integer(0) if expr.is_zero else expr
