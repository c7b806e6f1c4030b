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
from ropebook.checks.rope import (
    check_interleaved_to_half,
    check_relative_score,
    check_rope_2d,
    check_rope_elementwise,
    check_rope_matrix_sym,
    check_wavelengths,
)
from ropebook.checks.linear import check_causal_linear_attention, check_permutation_period, check_permutation_power
from ropebook.checks.crope import check_complex_linear, check_complex_part, check_layer_saving
from ropebook.checks.decay import check_abel_sum, check_base_ok, check_decay_bound  # ch-long-term-decay
from ropebook.checks import rope_gpu  # rb.checks.rope_gpu.check_… works in a fresh notebook too
from ropebook.checks.rope_gpu import (  # ch-rope-gpu
    check_decode_layer_bytes,
    check_fixed_point_angle,
    check_quarter_turn_cos_sin,
    check_rope_bytes,
    check_score_spread,
)
from ropebook.checks.foundations import (  # ch-why-position, ch-complex-rotations
    check_alibi_slopes,
    check_complex_inner,
    check_rotate_2d,
    check_rotation_composition,
    check_sinusoidal_encoding,
)

__all__ = ["Case", "CheckResult", "check_function", "check_sympy_equal"]
__all__ += [  # ch-deriving-rope, ch-rope-d-dims
    "check_rope_2d", "check_relative_score", "check_wavelengths",
    "check_interleaved_to_half", "check_rope_elementwise", "check_rope_matrix_sym",
]
__all__ += ["check_causal_linear_attention", "check_permutation_power", "check_permutation_period"]  # ch-linear-attention
__all__ += ["check_complex_part", "check_complex_linear", "check_layer_saving"]  # ch-crope
__all__ += ["check_decay_bound", "check_base_ok", "check_abel_sum"]  # ch-long-term-decay
__all__ += ["check_sinusoidal_encoding", "check_alibi_slopes"]  # ch-why-position
__all__ += ["check_complex_inner", "check_rotate_2d", "check_rotation_composition"]  # ch-complex-rotations
__all__ += ["check_rope_bytes", "check_decode_layer_bytes", "check_fixed_point_angle",  # ch-rope-gpu
            "check_quarter_turn_cos_sin", "check_score_spread", "rope_gpu"]
