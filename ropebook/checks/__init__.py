"""Exercise checkers: seeded random tests of a reader's function against ``ropebook.reference``.

Every checker takes the reader's function (or expression), runs it on seeded
cases and returns a :class:`CheckResult` that shows ``Correct`` or a short diff.
A checker never raises on a wrong answer, so a notebook keeps running.

>>> import numpy as np
>>> from ropebook.checks import CheckResult
>>> bool(CheckResult(True, "Correct"))
True
"""

from ropebook.checks._core import Case, CheckResult, check_function, check_sympy_equal

__all__ = ["Case", "CheckResult", "check_function", "check_sympy_equal"]
