"""ropebook: rotary position embedding, derived, implemented and measured.

The package behind the book of the same name. Every page imports it as
``import ropebook as rb`` and checks its own from-scratch code against it.

Public names are re-exported here; each lives in a module that holds one idea:

- ``rope``       frequencies, angles, ``apply_rope`` in both layouts, the complex form, packed positions
- ``rotary``     ``RotaryEmbedding`` (a module with a cos/sin cache) and the layout permutation of weights
- ``scaling``    context-extension rules (PI, NTK-aware, dynamic NTK, YaRN, Llama 3, LongRoPE)
- ``reference``  slow, obviously correct numpy versions (the oracle)
- ``symbolic``   sympy helpers for the derivation chapters
- ``positions``  the encodings before RoPE: sinusoidal, learned, Shaw et al., T5 buckets, ALiBi
- ``attention``  softmax and linear attention with a relative encoding; ``lrpe``, the LRPE family
- ``crope``      complex-linear projections and attention; ``model`` and ``data``, a small GPT and its bytes
- ``decay``      long-term decay: the RoFormer bound, random-score statistics, Men et al.'s base bound
- ``checks``     exercise checkers
- ``plotting``   figures; ``widgets`` wraps them (imported on first use: it needs ipywidgets)
- ``kernels``    the fused Triton kernel and its benchmark (``import ropebook.kernels``; needs Triton to run)
- ``bench``, ``bench_decay``, ``bench_linear``, ``experiments``: command-line benchmarks and training runs
  (``python -m ropebook.bench ...``), imported by name
"""

from ropebook import reference, scaling
from ropebook.rope import apply_rope, apply_rope_complex, packed_positions, rope_cos_sin, rope_frequencies
from ropebook.rotary import RotaryEmbedding, interleaved_to_half_weights, layout_permutation
from ropebook import checks, plotting, symbolic
from ropebook import positions  # ch-why-position
from ropebook import attention, lrpe
from ropebook import crope, data, model  # ch-crope
from ropebook import decay  # ch-long-term-decay
from ropebook.decay import decay_bound, min_base  # ch-long-term-decay

__all__ = [
    "apply_rope",
    "apply_rope_complex",
    "rope_cos_sin",
    "rope_frequencies",
    "packed_positions",
    "RotaryEmbedding",
    "layout_permutation",
    "interleaved_to_half_weights",
    "reference",
    "scaling",
    "checks",
    "plotting",
    "symbolic",
    "positions",
    "attention",
    "lrpe",
    "crope",
    "data",
    "model",
    "decay",
    "widgets",
    "decay_bound",
    "min_base",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    """Import ``rb.widgets`` on first use: it needs ipywidgets, which scripts and GPU jobs may lack."""
    if name == "widgets":
        import importlib

        try:
            return importlib.import_module("ropebook.widgets")
        except ModuleNotFoundError as err:  # hasattr(rb, "widgets") is then False, not an import error
            if err.name != "ipywidgets":
                raise
            raise AttributeError(f"ropebook.widgets needs ipywidgets, which is not installed ({err})") from err
    raise AttributeError(f"module 'ropebook' has no attribute {name!r}")
