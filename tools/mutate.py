"""Mutation testing for the book: does some page fail when the package is wrong?

Every page checks its claims against ``ropebook`` (agreement cells, sympy asserts). A
check that passes for a wrong package checks nothing. This tool makes each *mutant* in
:data:`MUTANTS` (a copy of the package with one deliberate, plausible mistake: a sign, an
exponent, a swapped layout), executes pages against it, and reports which page's cell
caught it. A mutant no page catches is a claim the book makes without checking it.

How a page is run: its MyST source is read with jupytext and executed with nbclient in a
kernel whose ``PYTHONPATH`` starts with the mutant's copy; a first cell asserts that
``ropebook`` really is imported from that copy. Cells tagged ``raises-exception`` may
raise, as in the build. A page that fails on a mutant is then run on the unmutated copy
(once per page): only if it passes there does it count as a catch. A page that fails
unmutated (a broken page, a timing check under load) would otherwise "catch" anything.

Usage::

    python tools/mutate.py list                        # the mutants and the pages that should catch them
    python tools/mutate.py run                         # every mutant (make mutate)
    python tools/mutate.py run sin-sign yarn-ramp -j 4 # some, four at a time
    python tools/mutate.py run --pages crope           # only these pages (for a survivor, all pages)
    python tools/mutate.py run --tests                 # also run each mutant's test files with pytest
    python tools/mutate.py run --table new.py          # try new mutants (a file defining MUTANTS; Mutant is given)
    python tools/mutate.py list --test-table           # the mutants only the tests catch (TEST_MUTANTS)
    python tools/mutate.py run --test-table            # those, against their test files only (make mutate-tests)

A mutant is run against its own ``pages`` first and stops at the first page that
catches it; only if none does are the other pages tried, so the report tells a gap in
one page from a gap in the whole book. Exit status: 0 if every mutant was caught
(with ``--tests``: also by its tests), 1 if any survived, 2 if a page (or a test file) failed unmutated.

:data:`TEST_MUTANTS` holds mistakes no page can see (a claim the book does not state, a
path only tests reach), which ``make mutate`` would report as survivors.
``run --test-table`` (``make mutate-tests``) runs only their test files, no pages, each
failure confirmed on an unmutated copy; exit status as above, "caught" meaning by its tests.

Both tables are checked in CI (``tests/test_mutate.py``): every edit must still apply to the
package exactly once and leave valid Python, so the mutants follow the code as it changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "_build", ".jupyter_cache", "*.ipynb")


@dataclass(frozen=True)
class Mutant:
    """One deliberate mistake: ``edits`` are (file under the repository, old text, new text)."""

    name: str
    why: str
    edits: tuple[tuple[str, str, str], ...]
    pages: tuple[str, ...]
    tests: tuple[str, ...] = ()


# the kernel's tests: the kernel itself, and its Hugging Face drop-ins (one file until they outgrew it)
KERNEL_TESTS = ("tests/test_kernels.py", "tests/test_kernels_hf.py")

_ROTATE_DOC = '    """Rotate the first rotary_dim features of x (..., T, D); the rest pass through."""\n'

MUTANTS: tuple[Mutant, ...] = (
    Mutant("sin-sign", "rotate by -θ instead of θ (the transposed rotation matrix)",
           (("ropebook/_rotation.py", _ROTATE_DOC, _ROTATE_DOC + "    sin = -sin\n"),),
           ("preface", "deriving-rope", "complex-rotations"), ("tests/test_rope.py",)),
    Mutant("sin-sign-and-oracle", "the same wrong sign in the package and in its numpy oracle",
           (("ropebook/_rotation.py", _ROTATE_DOC, _ROTATE_DOC + "    sin = -sin\n"),
            ("ropebook/reference.py", "return np.array([[c, -s], [s, c]], dtype=np.float64)",
             "return np.array([[c, s], [-s, c]], dtype=np.float64)")),
           ("deriving-rope", "complex-rotations"), ("tests/test_rope.py",)),
    Mutant("theta-exponent", "θ_i = b^(-i/d) instead of b^(-2i/d)",
           (("ropebook/scaling.py",
             "exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=device).to(dtype) / dim  # (dim/2,)",
             "exponent = torch.arange(0, dim // 2, dtype=torch.int64, device=device).to(dtype) / dim  # (dim/2,)"),),
           ("rope-d-dims", "long-term-decay"), ("tests/test_rope.py",)),
    Mutant("layout-swap", "pairs (2i, 2i+1) where the layout says (i, i + d/2), and back",
           (("ropebook/_rotation.py", '    if layout == "half":\n        return x.chunk(2, dim=-1)',
             '    if layout != "half":\n        return x.chunk(2, dim=-1)'),),
           ("rope-d-dims", "preface"), ("tests/test_rope.py",)),
    Mutant("float32-angles", "angles m·θ formed in float32, then widened",
           (("ropebook/rope.py", "return positions.to(torch.float64)[..., None] * inv_freq.to(torch.float64)",
             "return (positions.to(torch.float32)[..., None] * inv_freq.to(torch.float32)).to(torch.float64)"),),
           ("rope-d-dims", "rope-gpu"), ("tests/test_rope.py",)),
    Mutant("decay-sum", "the decay bound's mean taken as a sum",
           (("ropebook/decay.py", "(np.abs(partial).mean(axis=-1))", "(np.abs(partial).sum(axis=-1))"),),
           ("long-term-decay",), ("tests/test_decay.py",)),
    Mutant("yarn-ramp", "YaRN interpolates the fast pairs and keeps the slow ones",
           (("ropebook/scaling.py", "extrapolation = 1 - ramp  #", "extrapolation = ramp  #"),),
           ("rope-d-dims",), ("tests/test_scaling.py",)),
    Mutant("yarn-factor", "YaRN's attention factor 0.2 ln s + 1 instead of 0.1 ln s + 1",
           (("ropebook/scaling.py", "else 0.1 * mscale * math.log(scale) + 1.0",
             "else 0.2 * mscale * math.log(scale) + 1.0"),),
           ("rope-d-dims", "rope-gpu"), ("tests/test_scaling.py",)),
    Mutant("linear-unrotated", "linear attention with the rotated features in the denominator too",
           (("ropebook/attention.py",
             "    fq, fk, eq, ek = _features(fn, q, k, feature_map, encoding, positions)  # (..., T, D) each\n",
             "    fq, fk, eq, ek = _features(fn, q, k, feature_map, encoding, positions); fq, fk = eq, ek  # MUT\n"),),
           ("linear-attention",), ("tests/test_attention.py",)),
    Mutant("lrpe-transpose", "LRPE conjugates by Pᵀ R P instead of P R Pᵀ",
           (("ropebook/lrpe.py", "        P = self._p(x.dtype)  # (D, D)\n", "        P = self._p(x.dtype).T  # (D, D)\n"),),
           ("linear-attention",), ("tests/test_lrpe.py",)),
    Mutant("crope-conjugate", "CRoPE's complex projection multiplies by the conjugate weight",
           (("ropebook/crope.py",
             "y_re = F.linear(x_re, self.weight_real) - F.linear(x_im, self.weight_imag)",
             "y_re = F.linear(x_re, self.weight_real) + F.linear(x_im, self.weight_imag)"),
            ("ropebook/crope.py",
             "y_im = F.linear(x_re, self.weight_imag) + F.linear(x_im, self.weight_real)",
             "y_im = -F.linear(x_re, self.weight_imag) + F.linear(x_im, self.weight_real)")),
           ("crope",), ("tests/test_crope.py",)),
    Mutant("alibi-slope", "ALiBi slopes 2^(-8h/H) from h = 0 instead of h = 1",
           (("ropebook/positions.py", "2.0 ** (-8.0 * (j + 1) / h)", "2.0 ** (-8.0 * j / h)"),),
           ("why-position",), ("tests/test_positions.py",)),
    Mutant("sinusoid-swap", "the sinusoidal encoding with cos and sin swapped",
           (("ropebook/positions.py", "torch.stack((angles.sin(), angles.cos()), dim=-1)",
             "torch.stack((angles.cos(), angles.sin()), dim=-1)"),),
           ("why-position",), ("tests/test_positions.py",)),
    Mutant("kernel-backward", "the kernel's backward rotates by +θ (CONJ ignored)",
           (("ropebook/kernels/rope_triton.py", "    if CONJ:\n        sin = -sin\n", "    if CONJ:\n        sin = sin\n"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("turns-scale", "fixed-point turns at half the scale (2^62 where 2^63 is meant)",
           (("ropebook/kernels/_cache.py", "round(Fraction(theta) * 2**63 / _PI)",
             "round(Fraction(theta) * 2**62 / _PI)"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("yarn-bound-pi", "YaRN's ramp bounds from rotations·π instead of rotations·2π (bounds off by 2x in turns)",
           (("ropebook/scaling.py", "(rotations * 2 * math.pi)", "(rotations * math.pi)"),),
           ("rope-d-dims",), ("tests/test_scaling.py", "tests/test_hf_oracle.py")),
    Mutant("cos-sin-factor-dropped", "rope_cos_sin drops the rule's attention factor (YaRN's 0.1 ln s + 1)",
           (("ropebook/rope.py",
             "    factor = 1.0 if scaling is None else scaling.attention_factor\n    cos, sin = angles.cos(), angles.sin()\n",
             "    factor = 1.0\n    cos, sin = angles.cos(), angles.sin()\n"),),
           ("rope-d-dims", "rope-gpu"), ("tests/test_scaling.py", "tests/test_rope.py")),
    Mutant("partial-rotary-head-dim-freqs", "partial rotary: θ_i = b^(-2i/D) from head_dim D instead of rotary_dim r",
           (("ropebook/rope.py",
             "cos, sin = rope_cos_sin(positions, r, base=base, scaling=scaling, seq_len=seq_len, dtype=_compute_dtype(x))",
             "cos, sin = (t[..., : r // 2] for t in rope_cos_sin(positions, x.shape[-1], base=base, scaling=scaling, "
             "seq_len=seq_len, dtype=_compute_dtype(x)))"),),
           ("rope-gpu",), ("tests/test_rope.py", "tests/test_hf_oracle.py")),
    Mutant("weights-inverse-perm", "the checkpoint converter permutes rows by argsort(p) instead of p",
           (("ropebook/rotary.py", "p = layout_permutation(head_dim).to(w.device)",
             "p = torch.argsort(layout_permutation(head_dim)).to(w.device)"),),
           ("rope-d-dims",), ("tests/test_rope.py",)),
    Mutant("reference-freq-off-by-one", "the numpy oracle gives pair i the frequency of pair i + 1",
           (("ropebook/reference.py", "base ** (-2.0 * i / dim) for i in range(dim // 2)",
             "base ** (-2.0 * (i + 1) / dim) for i in range(dim // 2)"),),
           ("rope-d-dims",), ("tests/test_reference.py", "tests/test_rope.py")),
    Mutant("symbolic-transpose", "sympy's rotation_matrix returns R(α)ᵀ, the rotation by −α",
           (("ropebook/symbolic.py",
             "return sp.Matrix([[sp.cos(angle), -sp.sin(angle)], [sp.sin(angle), sp.cos(angle)]])",
             "return sp.Matrix([[sp.cos(angle), sp.sin(angle)], [-sp.sin(angle), sp.cos(angle)]])"),),
           ("deriving-rope", "rope-d-dims"), ("tests/test_symbolic.py",)),
    Mutant("kernel-k-inplace", "rope_qk(inplace=True) writes k's result to a new tensor, leaving k unrotated",
           (("ropebook/kernels/autograd.py",
             "k_out = None if k is None else (k if inplace else torch.empty_like(k))",
             "k_out = None if k is None else torch.empty_like(k)"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("kernel-factor-dropped", "rope_qk with computed angles ignores the cache's attention factor",
           (("ropebook/kernels/autograd.py",
             "spec = dict(half=r // 2, layout=layout, factor=cache.attention_factor)",
             "spec = dict(half=r // 2, layout=layout, factor=1.0)"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("turns-truncate", "fixed-point turns truncated (int) instead of rounded to the nearest integer",
           (("ropebook/kernels/_cache.py", "v = round(Fraction(theta) * 2**63 / _PI) % 2**64",
             "v = int(Fraction(theta) * 2**63 / _PI) % 2**64"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("causal-mask-leak", "softmax attention's causal mask lets query m see key m + 1 (triu(2) for triu(1))",
           (("ropebook/attention.py", "future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)  # (T, T)",
             "future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(2)  # (T, T)"),),
           ("why-position",), ("tests/test_attention.py",)),
    Mutant("softmax-scale-d", "softmax attention scaled by 1/d instead of 1/√d",
           (("ropebook/attention.py", "scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale",
             "scale = 1.0 / q.shape[-1] if scale is None else scale"),),
           ("why-position",), ("tests/test_attention.py",)),
    Mutant("linear-weights-den-unmasked", "causal linear-attention weights: the mask on the numerator only",
           (("ropebook/attention.py", "numerator, denominator = numerator * past, denominator * past",
             "numerator, denominator = numerator * past, denominator"),),
           ("linear-attention",), ("tests/test_attention.py",)),
    Mutant("linear-den-twice", "chunked causal linear attention counts the current key twice in the denominator",
           (("ropebook/attention.py", "denominator = (cq * (ck.cumsum(dim=-2) + z)).sum(-1, keepdim=True)",
             "denominator = (cq * (ck.cumsum(dim=-2) + ck + z)).sum(-1, keepdim=True)"),),
           ("linear-attention",), ("tests/test_attention.py",)),
    Mutant("decay-reverse", "the decay bound's partial sums S_j taken from the slow end (pairs in reverse order)",
           (("ropebook/decay.py", "partial = np.cumsum(z, axis=-1, out=z)", "partial = np.cumsum(z[..., ::-1], axis=-1)"),),
           ("long-term-decay",), ("tests/test_decay.py",)),
    Mutant("cos-sum-mean", "B_r as the mean of cos(rθ_i) over pairs (Men et al.'s code) instead of the sum",
           (("ropebook/decay.py", "return np.cos(r.reshape(-1, 1) * _theta(dim, base)).sum(axis=-1).reshape(r.shape)",
             "return np.cos(r.reshape(-1, 1) * _theta(dim, base)).mean(axis=-1).reshape(r.shape)"),),
           ("long-term-decay",), ("tests/test_decay.py",)),
    Mutant("base-bound-inclusive", "the base bound checks distances r ≤ L instead of r < L",
           (("ropebook/decay.py", "r = np.arange(start, min(L, start + chunk), dtype=np.float64)",
             "r = np.arange(start, min(L + 1, start + chunk), dtype=np.float64)"),),
           ("long-term-decay",), ("tests/test_decay.py",)),
    Mutant("relative-scores-sign", "relative_scores conjugates the query instead of the key: the score at −r",
           (("ropebook/decay.py", "h = (q[..., 0::2] + 1j * q[..., 1::2]) * np.conj(k[..., 0::2] + 1j * k[..., 1::2])",
             "h = np.conj(q[..., 0::2] + 1j * q[..., 1::2]) * (k[..., 0::2] + 1j * k[..., 1::2])"),),
           ("long-term-decay",), ("tests/test_decay.py",)),
    Mutant("shaw-sign", "Shaw's index clips m − n instead of n − m",
           (("ropebook/positions.py", "relative = pos[None, :] - pos[:, None]  # (T, T): n − m",
             "relative = pos[:, None] - pos[None, :]  # (T, T): n − m"),),
           ("why-position",), ("tests/test_positions.py",)),
    Mutant("householder-no-2", "the Householder reflection I − vvᵀ/vᵀv (the 2 forgotten): the LRPE member not unitary",
           (("ropebook/lrpe.py", "- 2.0 * torch.outer(v, v) / (v @ v)", "- torch.outer(v, v) / (v @ v)"),),
           ("linear-attention",), ("tests/test_lrpe.py",)),
    Mutant("permutation-inverse", "the permutation member applies Π^(−m) instead of Π^m",
           (("ropebook/lrpe.py", "step = (self._place + positions[..., None]) % self._len",
             "step = (self._place - positions[..., None]) % self._len"),),
           ("linear-attention",), ("tests/test_lrpe.py",)),
    Mutant("crope-out-complex", "CRoPE's output projection made complex-linear too (D²/2 parameters instead of D²)",
           (("ropebook/crope.py", "self.out_proj = nn.Linear(dim, dim, bias=False)  # real in both variants",
             "self.out_proj = self._make_projection(dim)  # real in both variants"),),
           ("crope",), ("tests/test_crope.py",)),
    Mutant("crope-complex-weight-conj", "ComplexLinear.complex_weight returns A − iB, the conjugate of what forward uses",
           (("ropebook/crope.py", "return torch.complex(self.weight_real, self.weight_imag)",
             "return torch.complex(self.weight_real, -self.weight_imag)"),),
           ("crope",), ("tests/test_crope.py",)),
    Mutant("corpus-val-overlap", "the validation split is the first 10 % of the bytes (inside the training split)",
           (("ropebook/data.py",
             "return Corpus(data[:-n_val].clone(), data[-n_val:].clone(), str(folder), len(chunks), version)",
             "return Corpus(data[:-n_val].clone(), data[:n_val].clone(), str(folder), len(chunks), version)"),),
           ("crope",), ("tests/test_experiments.py",)),
    Mutant("copy-logits-misaligned", "the copy task scores position j's logits against x_j, not x_(j−Δ)",
           (("ropebook/experiments/lrpe_recall.py", "logits = model(tokens)[:, cfg.offset:]  # (B, T − k, V)",
             "logits = model(tokens)[:, : cfg.seq_len - cfg.offset]  # (B, T − k, V)"),),
           ("linear-attention",), ("tests/test_lrpe.py",)),
    Mutant("summary-std-ddof", "summarize_comparison's spread over seeds with ddof=0 (population sd)",
           (("ropebook/plotting/crope.py", '"std": float(final.std(ddof=1)) if len(final) > 1 else 0.0,',
             '"std": float(final.std()) if len(final) > 1 else 0.0,'),),
           ("crope",), ("tests/test_crope.py",)),
    Mutant("model-sinusoid-rms", "TinyLM adds the sinusoidal table scaled by 0.02 (RMS 0.014), not 0.02·√2 (RMS 0.02)",
           (("ropebook/model.py", "self.pos_table[:T] * (0.02 * math.sqrt(2.0))", "self.pos_table[:T] * 0.02"),),
           ("crope",), ("tests/test_model.py",)),
    Mutant("inplace-overlap-unchecked", "in place, q and k views of one storage pass unchecked (a shared element is rotated twice)",
           (("ropebook/kernels/_aliasing.py", "        shared = _shared_elements(q, k)\n", "        shared = False\n"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("inplace-expand-unchecked", "in place, an expand()ed q or k (stride 0) passes: each location rotated once per repeat",
           (("ropebook/kernels/_aliasing.py", "for n, s in zip(shape, stride) if n > 1):",
             "for n, s in zip(shape, stride) if n > 1 and s != 0):"),),
           ("rope-gpu",), KERNEL_TESTS),
    Mutant("copy-model-no-latency", "the copy model's bandwidth read off the largest copy alone (bytes / t, no fixed cost)",
           (("ropebook/plotting/gpu.py",
             "    bandwidth = (large[\"bytes\"] - small[\"bytes\"]) / (t_l - t_s) / 1e3  # bytes per µs / 1e3 = GB/s\n",
             "    bandwidth = large[\"bytes\"] / t_l / 1e3  # MUT\n"),),
           ("rope-gpu",), ("tests/test_plotting_gpu.py",)),
)


# Caught by the unit tests but by no page: no page states the claim (an init scale, what a
# widget's frame draws) or runs the path (the blocked bf16 CPU path, torch.compile, a
# Hugging Face layout). `run --test-table` runs these; a page that starts catching one
# moves it to MUTANTS.
TEST_MUTANTS: tuple[Mutant, ...] = (
    Mutant("hf-config-dynamic-length", "from_hf_config: dynamic NTK's training length from the rope parameters' "
           "original_max_position_embeddings (absent: the default) where Hugging Face takes max_position_embeddings",
           (("ropebook/scaling.py", 'rule = DynamicNTK(float(need("factor")), need("max_position_embeddings", in_params=False))',
             'rule = DynamicNTK(float(need("factor")), params.get("original_max_position_embeddings", 2048))'),),
           (), ("tests/test_hf_oracle.py",)),
    Mutant("hf-config-no-interleave-flag", "from_hf_config ignores rope_interleave (DeepSeek-V3 rotated in the half layout)",
           (("ropebook/scaling.py", 'interleaved = bool(get("rope_interleave")) or ', "interleaved = "),),
           (), ("tests/test_hf_oracle.py",)),
    Mutant("hf-config-head-dim-first", "from_hf_config takes hidden_size // heads before DeepSeek's qk_rope_head_dim",
           (("ropebook/scaling.py", 'head_dim = get("qk_rope_head_dim") or get("head_dim") or (',
             'head_dim = get("head_dim") or ('),),
           (), ("tests/test_hf_oracle.py",)),
    Mutant("hf-config-partial-ignored", "from_hf_config rotates the whole head, ignoring partial_rotary_factor",
           (("ropebook/scaling.py", 'rotary_dim = int(head_dim * (params.get("partial_rotary_factor") or 1.0))',
             "rotary_dim = int(head_dim)"),),
           (), ("tests/test_hf_oracle.py",)),
    Mutant("module-table-jump-factor", "RotaryEmbedding builds a table only for calls asking half its rows, not a quarter",
           (("ropebook/rotary.py", "4 * asked < length", "2 * asked < length"),),
           (), ("tests/test_rope.py",)),
    Mutant("module-table-per-dtype", "RotaryEmbedding grows each dtype's table from max_positions, not from the longest held",
           (("ropebook/rotary.py", "for k, t in self._cache.items() if k[0] == dev]", "for k, t in self._cache.items() if k == key]"),),
           (), ("tests/test_rope.py",)),
    Mutant("converter-partial-ignored", "interleaved_to_half_weights permutes the whole head even with rotary_dim",
           (("ropebook/rotary.py", "    return torch.cat((torch.arange(0, r, 2), torch.arange(1, r, 2), torch.arange(r, head_dim)))",
             "    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))"),),
           (), ("tests/test_rope.py",)),
    Mutant("packed-no-restart", "packed_positions counts on across the packed batch instead of from 0 in each sequence",
           (("ropebook/rope.py", "positions = torch.arange(N, device=dev) - cu.to(torch.int64)[sequence]",
             "positions = torch.arange(N, device=dev) + 0 * cu.to(torch.int64)[sequence]"),),
           (), ("tests/test_rope.py",)),
    Mutant("packed-first-offset", "packed_positions adds the first sequence's offset to every sequence",
           (("ropebook/rope.py", "return positions + off.to(torch.int64).expand(B)[sequence]",
             "return positions + off.to(torch.int64).reshape(-1)[0]"),),
           (), ("tests/test_rope.py",)),
    Mutant("module-table-far-jump", "RotaryEmbedding builds a table for any jump, however far (up to 2^20 rows)",
           (("ropebook/rotary.py", "if length > limit or (length > 2 * have and 4 * asked < length):",
             "if length > limit:"),),
           (), ("tests/test_rope.py",)),
    Mutant("ntk-no-exponent", "NTK-aware base b' = b·s, without the exponent d/(d-2)",
           (("ropebook/scaling.py", 'new_base = base * self.factor ** _ntk_exponent("NTKAware", dim)',
             "new_base = base * self.factor"),),
           (), ("tests/test_scaling.py", "tests/test_hf_oracle.py")),
    Mutant("dynamic-ntk-exponent", "dynamic NTK raises the length ratio to (d-2)/d instead of d/(d-2)",
           (("ropebook/scaling.py", '** _ntk_exponent("DynamicNTK", dim)',
             '** (1 / _ntk_exponent("DynamicNTK", dim))'),),
           (), ("tests/test_scaling.py", "tests/test_hf_oracle.py")),
    Mutant("llama3-thresholds-swapped", "Llama 3.1: the low- and high-frequency wavelength thresholds swapped",
           (("ropebook/scaling.py",
             "low_freq_wavelen, high_freq_wavelen = L / self.low_freq_factor, L / self.high_freq_factor",
             "low_freq_wavelen, high_freq_wavelen = L / self.high_freq_factor, L / self.low_freq_factor"),),
           (), ("tests/test_scaling.py", "tests/test_hf_oracle.py")),
    Mutant("yarn-clamp-half", "YaRN clamps the ramp's upper bound to d/2 - 1 (the last pair) where HF clamps to d - 1",
           (("ropebook/scaling.py", "min(high, dim - 1)", "min(high, dim // 2 - 1)"),),
           (), ("tests/test_scaling.py", "tests/test_hf_oracle.py")),
    Mutant("cpu-block-rows", "the blocked bf16/fp16 CPU path reads the first row block's cos/sin for every row block",
           (("ropebook/_rotation.py",
             "cb, sb = cs[n : n + rows, t : t + tokens], ss[n : n + rows, t : t + tokens]",
             "cb, sb = cs[:rows, t : t + tokens], ss[:rows, t : t + tokens]"),),
           (), ("tests/test_rope.py",)),
    Mutant("module-k-offset", "RotaryEmbedding applies the KV-cache offset to q but not to k",
           (("ropebook/rotary.py", "pos = _rope._positions(fn, t, positions, offset)  #",
             "pos = _rope._positions(fn, t, positions, offset if t is q else 0)  #"),),
           (), ("tests/test_rope.py",)),
    Mutant("hf-unsqueeze2-k", "the Hugging Face drop-in returns k in the kernel's (B, H, T, D) view for unsqueeze_dim=2",
           (("ropebook/kernels/hf/_factory.py", "qr, kr = qr.transpose(1, 2), kr.transpose(1, 2)",
             "qr, kr = qr.transpose(1, 2), kr"),),
           (), KERNEL_TESTS),
    Mutant("compiled-factor-dropped", "under torch.compile the custom operator is called with factor 1.0",
           (("ropebook/kernels/op.py", 'spec.get("factor", 1.0), spec.get("offset", 0)',
             '1.0, spec.get("offset", 0)'),),
           (), KERNEL_TESTS),
    Mutant("crope-init-scale", "ComplexLinear initialised with the complex fan-in D/2: twice the output variance of nn.Linear",
           (("ropebook/crope.py", "bound = 1.0 / math.sqrt(in_features)",
             "bound = 1.0 / math.sqrt(in_features // 2)"),),
           (), ("tests/test_crope.py",)),
    Mutant("rotation-explorer-m-plus-1", "the rotation explorer draws the query at position m + 1 under the caption m",
           (("ropebook/widgets.py", "return rotation_2d(q, k, m, n, theta=theta, width=3.8, height=3.8)",
             "return rotation_2d(q, k, m + 1, n, theta=theta, width=3.8, height=3.8)"),),
           (), ("tests/test_widgets.py",)),
    Mutant("offset-per-token-when-b-is-t", "apply_rope reads a (B,) offset per token when B == T, silently",
           (("ropebook/rope.py", "if offset.ndim == 1 and x.ndim >= 3 and 1 < offset.shape[0] == x.shape[0] == x.shape[-2]:",
             "if False:"),),
           (), ("tests/test_rope.py",)),
    Mutant("inplace-version-not-bumped", "the kernel writes q and k in place without telling autograd: a graph that "
           "saved them computes gradients from the rotated values",
           (("ropebook/kernels/autograd.py", "    increment_version((q,) if k is None else (q, k))", "    pass"),),
           (), KERNEL_TESTS),
    Mutant("patch-hf-llama-everywhere", "patch_hf installs Llama's drop-in whatever the module's formula (as before "
           "the probe): GLM, ERNIE 4.5 and Helium pair features (2i, 2i + 1), so their outputs change silently",
           (("ropebook/kernels/hf/_patch.py", "        patches[attr] = (original, _DROP_INS[form])",
             "        patches[attr] = (original, hf_apply_rotary_pos_emb)"),),
           (), KERNEL_TESTS),
    Mutant("hf-interleaved-compares-halves", "the interleaved drop-in compares cos's halves, which GLM's function "
           "never reads: a model whose halves differ is refused for nothing",
           (("ropebook/kernels/hf/_factory.py", '    twice = base in ("half", "single", "cohere", "nanochat")  # cos holds',
             '    twice = base != "pairs"  # cos holds'),),
           (), KERNEL_TESTS),
    Mutant("hf-cohere-copies-unchecked", "Cohere's drop-in reads every other value of cos without checking that each "
           "value is there twice in a row: Llama's cos (equal halves) handed to it rotates by the wrong angles, silently",
           (("ropebook/kernels/hf/_factory.py", '    twice = base in ("half", "single", "cohere", "nanochat")  # cos holds',
             '    twice = base in ("half", "single", "nanochat")  # cos holds'),),
           (), (*KERNEL_TESTS, "tests/test_bad_arguments.py")),
    Mutant("hf-cohere-reads-first-half", "Cohere's drop-in reads the first half of cos, as GLM's does, instead of every "
           "other value",
           (("ropebook/kernels/hf/_factory.py", "    step = 2 if in_a_row else 1", "    step = 1"),),
           (), KERNEL_TESTS),
    Mutant("hf-interleave-writes-interleaved", "DeepSeek-V3's drop-in writes its output interleaved, as read, not as "
           "(i, i + r/2): the model's q·k is unchanged (the same permutation of q and k) but the tensors returned, and "
           "its KV cache, are not the function's",
           (("ropebook/kernels/hf/_factory.py", '_OUT_LAYOUTS = {"deepseek": "half"}', "_OUT_LAYOUTS = {}"),),
           (), KERNEL_TESTS),
    Mutant("backward-layout-not-inverted", "the backward of a rotation that reads one layout and writes the other "
           "reads the gradients in the input's layout",
           (("ropebook/kernels/autograd.py", '"layout": rope_triton.inverse_layout(launch["layout"])}',
             '"layout": launch["layout"]}'),),
           (), KERNEL_TESTS),
    Mutant("operator-backward-layout-not-inverted", "under torch.compile the custom operator's backward reads the "
           "gradients in the input's layout",
           (("ropebook/kernels/op.py", "half, rope_triton.inverse_layout(layout), *rest,", "half, layout, *rest,"),),
           (), KERNEL_TESTS),
    Mutant("hf-vision-not-patched", "patch_hf leaves a vision tower's apply_rotary_pos_emb_vision in place: the "
           "Qwen-VL family's image encoders run the eager formula, where the chapter says they run the kernel",
           (("ropebook/kernels/hf/_probing.py", '"apply_rotary_pos_emb_vision": ("vision", "vision_cohere"),', ""),),
           (), KERNEL_TESTS),
    Mutant("hf-vision-cohere-as-llama", "Inkling 2's vision drop-in rotates Llama's pairs (i, i + r/2) instead of "
           "Cohere's (2i, 2i + 1)",
           (("ropebook/kernels/hf/_factory.py", '_VISION = {"vision": "half", "vision_cohere": "cohere"}',
             '_VISION = {"vision": "half", "vision_cohere": "half"}'),),
           (), KERNEL_TESTS),
    Mutant("hf-gptj-sin-cos-swapped", "GPT-J's drop-in reads its arguments in Llama's order, cos before sin: it "
           "rotates by the complementary angle, silently",
           (("ropebook/kernels/hf/_factory.py", "            return pair(tensor, None, cos, sin, 2)",
             "            return pair(tensor, None, sin, cos, 2)"),),
           (), KERNEL_TESTS),
    Mutant("hf-pairs-interleaved-as-pairs", "the OpenAI privacy filter's drop-in pairs features (i, i + D/2), as "
           "gpt-oss's, instead of (2i, 2i + 1)",
           (("ropebook/kernels/hf/_factory.py", '"pairs_interleaved": "interleaved", "gptj": "interleaved",',
             '"pairs_interleaved": "half", "gptj": "interleaved",'),),
           (), KERNEL_TESTS),
    Mutant("hf-deepseek-v4-turns-the-first-features", "DeepSeek-V4's drop-in rotates the first r features of a head, "
           "as every other partial-rotary form does, where V4 rotates the last r: the same at r = D, silently wrong "
           "below it",
           (("ropebook/kernels/hf/_factory.py", "        if last and 2 * pairs < D:", "        if False and 2 * pairs < D:"),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-turns-the-first-features-for-v4", "the probe expects DeepSeek-V4's form to rotate the first r "
           "features: V4's own function is refused, and a function that rotates the first r gets V4's drop-in",
           (("ropebook/kernels/hf/_probing.py", "    skip = q.shape[-1] - r if form in _LAST else 0", "    skip = 0"),),
           (), KERNEL_TESTS),
    Mutant("hf-dinov3-turns-the-first-tokens", "DINOv3's drop-in rotates the first P tokens by the patches' angles, "
           "where DINOv3 rotates the last P (the patches, after the class token and registers): the same with no prefix, "
           "silently wrong with one",
           (("ropebook/kernels/hf/_factory.py", "_rope_qk_cos_sin(fn, q[:, :, p:], k[:, :, p:], cos,",
             "_rope_qk_cos_sin(fn, q[:, :, :-p], k[:, :, :-p], cos,"),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-no-prefix-for-dinov3", "the probe of DINOv3's form hands every function as many rows of cos as "
           "tokens: a function that rotates every token, the class token and registers too, gets DINOv3's drop-in",
           (("ropebook/kernels/hf/_probing.py", '        tokens = 0 if call == "no prefix" else 2', "        tokens = 0"),),
           (), KERNEL_TESTS),
    Mutant("hf-complex-conjugate", "Llama 4's drop-in multiplies by the conjugate of freqs_cis (sin's sign flipped): a "
           "turn by −θ, silently (q·k then sees n − m where the model was trained on m − n)",
           (("ropebook/kernels/hf/_factory.py", "return pair(xq, xk, f[..., 0], f[..., 1], dim)",
             "return pair(xq, xk, f[..., 0], -f[..., 1], dim)"),),
           (), KERNEL_TESTS),
    Mutant("hf-complex-bits-unresolved", "the complex drop-ins hand the kernel freqs_cis's memory without resolving "
           "torch's lazy conjugate and negative bits: a negated view turns the wrong way, silently",
           (("ropebook/kernels/hf/_checks.py", "    freqs = freqs.resolve_conj().resolve_neg()\n", ""),),
           (), KERNEL_TESTS),
    Mutant("hf-others-refused", "patch_hf refuses a module whose apply_rotary_emb is another library's (flash-attn's, "
           "imported under that name) instead of patching its apply_rotary_pos_emb and leaving that one alone",
           (("ropebook/kernels/hf/_patch.py", "        if form is None and attr in _OTHERS and _takes_none(original, forms):",
             "        if False:"),),
           (), KERNEL_TESTS),
    Mutant("hf-others-left-when-they-differ", "patch_hf leaves an apply_rotary_emb that takes Meta's call and computes "
           "another rotation as it is, where it should refuse the module: the model then runs a function nobody checked",
           (("ropebook/kernels/hf/_probing.py", '    return all(isinstance(d, str) and d.startswith("raised")',
             '    return True or all(isinstance(d, str) and d.startswith("raised")'),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-complex-one-row", "the probe of Meta's complex form hands every function one row of freqs_cis "
           "for both sequences: a function that turns every sequence by the first one's angles gets Llama 4's drop-in",
           (("ropebook/kernels/hf/_probing.py", '        if form == "llama4_vision" or call == "one row":', "        if True:"),),
           (), KERNEL_TESTS),
    Mutant("hf-clvp-v-unturned", "CLVP's drop-in turns q and k and hands v back as it came: CLVP's attention then "
           "mixes values its model was trained to see rotated, silently",
           (("ropebook/kernels/hf/_factory.py", "            return qr, kr, pair(v, None, cos, sin, unsqueeze_dim)",
             "            return qr, kr, v"),),
           (), KERNEL_TESTS),
    Mutant("hf-clvp-reads-the-first-rows", "CLVP's drop-in reads the first T rows of the table whatever the position "
           "ids: the same for ids 0..T-1, silently wrong for any others",
           (("ropebook/kernels/hf/_checks.py", "    return cos[position_ids], sin[position_ids]",
             "    return cos[:position_ids.shape[1]], sin[:position_ids.shape[1]]"),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-clvp-positions-in-order", "the probe of CLVP's form hands every function the ids 0, 1, 2 for "
           "both sequences: a function that ignores the ids and reads the first rows gets CLVP's drop-in",
           (("ropebook/kernels/hf/_probing.py", "        pos = torch.tensor([[4, -1, 2], [1, -4, 1]])",
             "        pos = torch.tensor([[0, 1, 2], [0, 1, 2]])"),),
           (), KERNEL_TESTS),
    Mutant("hf-clvp-clamps-negative-ids", "CLVP's drop-in reads a negative position id as row 0, where CLVP's "
           "indexing counts it from the end of the table: silently wrong for negative ids alone",
           (("ropebook/kernels/hf/_checks.py", "    return cos[position_ids], sin[position_ids]",
             "    return cos[position_ids.clamp(min=0)], sin[position_ids.clamp(min=0)]"),),
           (), KERNEL_TESTS),
    Mutant("hf-clvp-halves-unchecked", "CLVP's drop-in does not compare the table's halves before the kernel reads "
           "the first: a table whose halves differ is turned by its first half, silently",
           (("ropebook/kernels/hf/_checks.py", "        _check_twice(fn, cos, sin, False)\n    return cos[position_ids]",
             "        pass\n    return cos[position_ids]"),),
           (), (*KERNEL_TESTS, "tests/test_bad_arguments.py")),
    Mutant("hf-sam2d-later-frames-unturned", "SAM 2's drop-in turns the first frame of memory with q and hands the "
           "later frames' keys back as they came: the same in self-attention and with one frame, silently wrong "
           "for a memory of several",
           (("ropebook/kernels/hf/_factory.py",
             "krs = [kr] + [pair(k[:, :, i * T:(i + 1) * T], None, cos, sin, 1) for i in range(1, tiles)]",
             "krs = [kr] + [k[:, :, i * T:(i + 1) * T] for i in range(1, tiles)]"),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-sam-one-tile", "the probe of SAM 2's form hands every function one frame of memory where it "
           "should hand two: a function that repeats each row of the table where SAM 2 tiles it gets the drop-in",
           (("ropebook/kernels/hf/_probing.py", '            k = torch.randn(2, 2, 5 if call == "keys excluded" else 7, 8, generator=g)',
             '            k = torch.randn(2, 2, 5 if call == "keys excluded" else 4, 8, generator=g)'),),
           (), KERNEL_TESTS),
    Mutant("hf-sam2d-tiles-without-repeat", "SAM 2's drop-in tiles the table over keys of several frames whether or "
           "not repeat_freqs_k asks it to, where SAM 2's function raises: a caller's mistake passes silently",
           (("ropebook/kernels/hf/_checks.py", "tiles != 1 and not (repeat or T == 1)", "tiles != 1 and False"),),
           (), ("tests/test_bad_arguments.py",)),
    Mutant("hf-edgetam-keys-by-qs-table", "EdgeTAM's drop-in turns the spatial tokens of each frame of memory by the "
           "first rows of q's table instead of the keys' own: silently wrong wherever the two grids differ",
           (("ropebook/kernels/hf/_factory.py", "pair(k[:, :, i * per + t:(i + 1) * per], None, cos_k, sin_k, 1)",
             "pair(k[:, :, i * per + t:(i + 1) * per], None, cos[..., :per - t, :], sin[..., :per - t, :], 1)"),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-edgetam-keys-table-is-qs", "the probe of EdgeTAM's cross-attention form hands every function a "
           "keys' table equal to the first rows of q's: a function that turns the keys by q's table gets the drop-in",
           (("ropebook/kernels/hf/_probing.py", "        ck, sk = (torch.rand(1, 2, r // 2, generator=g) * 2 - 1 for _ in range(2))",
             "        ck, sk = c[:, :2], s[:, :2]"),),
           (), KERNEL_TESTS),
    Mutant("hf-probe-edgetam-one-head", "the probe of EdgeTAM's cross-attention form hands every function keys of one "
           "head: a function that reads the heads as more tokens of each frame gets the drop-in",
           (("ropebook/kernels/hf/_probing.py", "        k = torch.randn(2, 2, frames * per + n, 8, generator=g)",
             "        k = torch.randn(2, 1, frames * per + n, 8, generator=g)"),),
           (), KERNEL_TESTS),
    Mutant("hf-edgetam-keys-table-unchecked", "EdgeTAM's drop-in lets the kernel read the keys' table unchecked under "
           "its own name: a cos_k whose copies differ is refused as 'cos', the wrong argument",
           (("ropebook/kernels/hf/_factory.py", '                _check_twice(fn, cos_k, sin_k, True, ("cos_k", "sin_k"))',
             "                pass"),),
           (), ("tests/test_bad_arguments.py",)),
    Mutant("bench-inputs-not-restored", "the benchmark's loop hands each contender the inputs as the one before it "
           "left them: an in-place contender's thousands of turns reach the next one's timing and error",
           (("ropebook/kernels/bench/_timing.py", "            for x, x0 in zip(inputs, saved):\n                x.copy_(x0)\n            try:",
             "            try:"),),
           (), ("tests/test_kernel_bench.py",)),
    Mutant("bench-error-after-in-place", "the benchmark takes its float64 references from q and k after the row's "
           "call: an in-place row is compared with the rotation of its own output, and its error reads as q's size",
           (("ropebook/kernels/bench/_rows.py",
             "    return max((y.double() - ref).abs().max().item() for y, ref in zip(outputs(), refs))",
             "    outs = outputs()\n    refs = [rb.apply_rope(x.transpose(1, 2).double(), offset=offs, backend=\"torch\") "
             "for x in (q_mem, k_mem)]\n    return max((y.double() - ref).abs().max().item() for y, ref in zip(outs, refs))"),),
           (), ("tests/test_kernel_bench.py",)),
    Mutant("hf-nanochat-plus-theta", "nanochat's drop-in asks the kernel for Llama's rotation by +θ: the rotation its "
           "function undoes, silently (q·k then sees n − m where the model was trained on m − n)",
           (("ropebook/kernels/autograd.py", '**op.table_args(cos3, None), **({"conj": True} if conj else {}))',
             "**op.table_args(cos3, None))"),),
           (), KERNEL_TESTS),
    Mutant("kernel-cos-feature-stride-ignored", "the kernel reads cos and sin with feature stride 1 whatever their "
           "stride (a strided cos, Cohere's every other value, read as if contiguous)",
           (("ropebook/kernels/rope_triton.py", "+ i[None, :] * cs_d  # masked", "+ i[None, :]  # masked"),),
           (), KERNEL_TESTS),
    Mutant("empty-q-tail-from-q", "with Hq = 0, out of place is told from q alone (empty tensors' data_ptr 0): k's "
           "unrotated features left as uninitialised memory",
           (("ropebook/kernels/rope_triton.py", "x, out = (k, k_out) if q.numel() == 0 and k is not None else (q, q_out)",
             "x, out = q, q_out"),),
           (), KERNEL_TESTS),
    Mutant("backward-not-recorded", "create_graph=True: the backward launches the kernel outside autograd, so "
           "second-order gradients are dropped",
           (("ropebook/kernels/autograd.py", "if _records_graph(gq, gk):  # create_graph=True", "if False:  # create_graph=True"),),
           (), KERNEL_TESTS),
    Mutant("operator-backward-conj-fixed", "the custom operator's backward always rotates by −θ: its own backward "
           "(the second derivative) rotates the wrong way",
           (("ropebook/kernels/op.py", "inverse_layout(layout), *rest,\n                                                       not ctx.conj)",
             "inverse_layout(layout), *rest,\n                                                       True)"),),
           (), KERNEL_TESTS),
    Mutant("repeat-positions-made-contiguous", "a repeated call hands the kernel a contiguous copy of positions "
           "while its plan holds the strides of the first call's (transposed) positions",
           (("ropebook/kernels/autograd.py", "(None, None, cache.turns)), positions,",
             "(None, None, cache.turns)), None if positions is None else positions.contiguous(),"),),
           (), KERNEL_TESTS),
    Mutant("packed-offset-vs-max-seqlen", "a packed batch's int offset checked against max_seqlen when cu_seqlens's "
           "lengths are known: a generous max_seqlen refused",
           (("ropebook/kernels/autograd.py", "(max_seqlen if cu_max is None else cu_max) if varlen", "max_seqlen if varlen"),),
           (), KERNEL_TESTS),
    Mutant("compiled-packed-offset-vs-max-seqlen", "the same, in the custom operator's body (torch.compile's path)",
           (("ropebook/kernels/op.py", "(max_seqlen if longest is None else longest)", "max_seqlen"),),
           (), KERNEL_TESTS),
)


def _pages() -> list[str]:
    """The executed pages, in the order of the table of contents."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    return [Path(f).name for f in files if "{code-cell}" in (ROOT / f"{f}.md").read_text()]


def apply(mutant: Mutant, tree: Path) -> None:
    """Apply ``mutant``'s edits to the copy at ``tree``; each old text must occur exactly once."""
    for rel, old, new in mutant.edits:
        path = tree / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise ValueError(f"mutant {mutant.name!r}: expected the text to replace once in {rel}, "
                             f"found it {text.count(old)} times: {old[:80]!r}")
        path.write_text(text.replace(old, new))


def make_copy(dest: Path, mutant: Mutant | None, *, with_tests: bool = False) -> Path:
    """Copy what pages read (with ``with_tests``: every tracked top-level file and folder, which tests may read)
    into ``dest`` and apply ``mutant`` (None: the unmutated copy)."""
    parts = ["ropebook", "book"]
    if with_tests:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        parts = sorted({line.split("/")[0] for line in tracked.splitlines() if line})
    for part in parts:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=_IGNORE)
        else:
            shutil.copy2(src, dest / part)
    if mutant is not None:
        apply(mutant, dest)
    return dest


def _env(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.pop("ROPEBOOK_SITE", None)
    return env


def execute_page(tree: Path, page: str, *, timeout: int = 900) -> dict:
    """Execute ``tree/book/page.md`` in a fresh kernel (run in a child process with ``_env(tree)``)."""
    proc = subprocess.run([sys.executable, __file__, "_page", str(tree), page, str(timeout)],
                          env=_env(tree), capture_output=True, text=True, cwd=tree / "book")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"page": page, "status": "error", "cell": None, "source": "",
                "error": (proc.stderr or proc.stdout)[-600:], "seconds": None}
    return json.loads(lines[-1])


def _page_child(tree: str, page: str, timeout: str) -> None:
    """In the child: read the page, prepend the import guard, execute, print one JSON line."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    book = Path(tree) / "book"
    nb = jupytext.read(book / f"{page}.md")
    guard = (f"import os, ropebook as _rb\nassert _rb.__file__.startswith({tree!r}), _rb.__file__\n"
             f"assert os.getcwd() == {str(book)!r}, os.getcwd()\ndel _rb")
    nb.cells.insert(0, nbformat.v4.new_code_cell(guard))
    client = NotebookClient(nb, timeout=int(timeout), kernel_name="python3",
                            resources={"metadata": {"path": str(book)}}, allow_errors=False)
    start = time.perf_counter()
    result = {"page": page, "status": "pass", "cell": None, "source": "", "error": ""}
    try:
        client.execute()
    except CellExecutionError:
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        for index, cell in enumerate(code_cells):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                first = next((line for line in cell.source.splitlines() if line.strip()), "")
                result.update(status="fail", cell=index, source=first[:120],
                              error=f"{errors[0]['ename']}: {errors[0]['evalue']}"[:400])
                break
        else:
            result.update(status="fail", error="a cell failed (no error output found)")
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result), flush=True)


def run_tests(tree: Path, files: tuple[str, ...]) -> dict:
    """Run ``files`` with pytest inside the copy (its ``ropebook`` comes first on the path)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
                          env={**_env(tree), "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True, text=True)
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or [proc.stderr[-200:]]
    # pytest exits 1 when a test failed (caught); 0 is a survivor; anything else is an error.
    status = {0: "pass", 1: "fail"}.get(proc.returncode, "error")
    # -ra (pyproject's addopts) lists "FAILED path::test - message": the test that caught it.
    failed = next((line for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))), "")
    return {"status": status, "summary": tail[0][:200], "failed": failed[:200],
            "seconds": round(time.perf_counter() - start, 1)}


class Baseline:
    """Results on the unmutated copies (a page, or a set of test files), each run once on first request.

    Thread-safe: mutants run in parallel may ask for the same page; it runs once and the others wait.
    """

    def __init__(self, workdir: Path, *, trust: bool = False):
        self.workdir, self.trust = workdir, trust
        self.results: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def _once(self, key: str, with_tests: bool, run) -> dict:
        tree = self.workdir / ("_baseline_tests" if with_tests else "_baseline")
        with self._lock:
            if not tree.exists():
                make_copy(tree, None, with_tests=with_tests)
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self.results:
                self.results[key] = run(tree)
            return self.results[key]

    def result(self, page: str) -> dict:
        """``page`` executed on the unmutated copy."""
        if self.trust:
            return {"page": page, "status": "pass"}
        return self._once(page, False, lambda tree: execute_page(tree, page))

    def tests_result(self, files: tuple[str, ...]) -> dict:
        """``files`` run with pytest on an unmutated copy with the tests."""
        if self.trust:
            return {"status": "pass"}
        return self._once(" ".join(files), True, lambda tree: run_tests(tree, files))


def run_mutant(mutant: Mutant, pages: list[str], workdir: Path, baseline: Baseline, *, tests: bool) -> dict:
    """Run ``mutant`` against its own pages, then (while it survives) the others in ``pages``."""
    tree = make_copy(workdir / mutant.name, mutant, with_tests=tests)
    order = [p for p in mutant.pages if p in pages] + [p for p in pages if p not in mutant.pages]
    outcome: dict = {"name": mutant.name, "why": mutant.why, "runs": [], "caught_by": None}
    for page in order:
        run = execute_page(tree, page)
        outcome["runs"].append(run)
        if run["status"] == "fail":
            unmutated = baseline.result(page)
            if unmutated["status"] == "pass":
                outcome["caught_by"] = run
                break
            run["status"] = "error"
            run["error"] = f"fails unmutated too (cell {unmutated.get('cell')}): {unmutated.get('error', '')}"
    if tests and mutant.tests:
        outcome["tests"] = run_tests(tree, mutant.tests)
        if outcome["tests"]["status"] == "fail":
            unmutated = baseline.tests_result(mutant.tests)
            if unmutated["status"] != "pass":
                outcome["tests"] = {**outcome["tests"], "status": "error",
                                    "summary": f"fail unmutated too: {unmutated['summary']}"}
    return outcome


def _report(outcome: dict, own_pages: tuple[str, ...]) -> str:
    caught = outcome["caught_by"]
    errors = [r for r in outcome["runs"] if r["status"] == "error"]
    if caught:
        where = "" if caught["page"] in own_pages else "  (not by its own pages)"
        line = (f"CAUGHT    {outcome['name']}: {caught['page']}, code cell {caught['cell']} "
                f"`{caught['source']}`{where}\n          {caught['error'].splitlines()[0][:160]}")
    else:
        line = f"SURVIVED  {outcome['name']}: {outcome['why']}; ran {', '.join(r['page'] for r in outcome['runs'])}"
    for run in errors:
        line += f"\n          error running {run['page']}: {run['error'][-300:]}"
    if "tests" in outcome:
        t = outcome["tests"]
        line += f"\n          tests: {'caught' if t['status'] == 'fail' else t['status']} ({t['summary']})"
    return line


def _report_tests(outcome: dict) -> str:
    """One mutant of ``--test-table``: caught by its tests, survived them, or an error."""
    t = outcome.get("tests", {"status": "pass", "summary": "no test files", "failed": ""})
    if t["status"] == "fail":
        return f"CAUGHT    {outcome['name']}: {t['failed'] or t['summary']}\n          {t['summary']}"
    if t["status"] == "error":
        return f"ERROR     {outcome['name']}: {outcome['why']}; tests: {t['summary']}"
    return f"SURVIVED  {outcome['name']}: {outcome['why']}; tests: {t['summary']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="print the mutants")
    listing.add_argument("--test-table", action="store_true", help="print TEST_MUTANTS (caught by tests only)")
    run = sub.add_parser("run", help="run mutants against the pages")
    run.add_argument("names", nargs="*", help="mutants to run (default: all)")
    run.add_argument("--pages", nargs="+", help="pages to run (default: every executed page)")
    run.add_argument("-j", "--jobs", type=int, default=2, help="mutants run at once (default 2)")
    run.add_argument("--tests", action="store_true", help="also run each mutant's test files")
    run.add_argument("--json", type=Path, help="write every run's result to this file")
    run.add_argument("--no-baseline", action="store_true",
                     help="count a failing page (or test file) as a catch without running it unmutated")
    run.add_argument("--table", type=Path, help="a Python file whose MUTANTS replace the built-in table "
                     "(with --test-table: TEST_MUTANTS), to try new ones")
    run.add_argument("--test-table", action="store_true",
                     help="run TEST_MUTANTS against their test files only, no pages (make mutate-tests)")
    child = sub.add_parser("_page")
    child.add_argument("tree")
    child.add_argument("page")
    child.add_argument("timeout")
    args = parser.parse_args(argv)

    if args.command == "_page":
        _page_child(args.tree, args.page, args.timeout)
        return 0
    if args.command == "list":
        table = TEST_MUTANTS if args.test_table else MUTANTS
        width = max(len(m.name) for m in table)
        for m in table:
            print(f"{m.name:{width}} {m.why}\n{'':{width}} pages: {', '.join(m.pages) or '-'}; tests: {', '.join(m.tests) or '-'}")
        return 0

    if args.test_table and args.pages:
        parser.error(f"--pages: expected none with --test-table (it runs test files only), got {args.pages}")
    table = TEST_MUTANTS if args.test_table else MUTANTS
    if args.table:
        namespace: dict = {"Mutant": Mutant}
        exec(compile(args.table.read_text(), str(args.table), "exec"), namespace)
        table = tuple(namespace["MUTANTS"])
    by_name = {m.name: m for m in table}
    unknown = [n for n in args.names if n not in by_name]
    all_pages = _pages()
    bad_pages = [p for p in args.pages or [] if p not in all_pages]
    if unknown or bad_pages:
        parser.error(f"unknown mutants {unknown} or pages {bad_pages}; "
                     f"mutants: {', '.join(by_name)}; pages: {', '.join(all_pages)}")
    mutants = [by_name[n] for n in args.names] if args.names else list(table)
    pages = [] if args.test_table else args.pages or all_pages  # no pages: run_mutant runs only the tests
    tests = args.tests or args.test_table
    with tempfile.TemporaryDirectory(prefix="ropebook-mutate-") as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        baseline = Baseline(workdir, trust=args.no_baseline)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(run_mutant, m, pages, workdir, baseline, tests=tests) for m in mutants]
            outcomes = []
            for m, future in zip(mutants, futures):
                outcome = future.result()
                outcomes.append(outcome)
                print(_report_tests(outcome) if args.test_table else _report(outcome, m.pages), flush=True)
    broken = sorted(p for p, r in baseline.results.items() if r["status"] != "pass")  # pages or test files
    if args.test_table:  # caught: a test failed (and passes unmutated); a mutant without tests survives
        survived = [o["name"] for o in outcomes if o.get("tests", {}).get("status") != "fail"]
        missed, by = [], "their tests"
    else:
        survived = [o["name"] for o in outcomes if o["caught_by"] is None]
        missed = [o["name"] for o in outcomes if o.get("tests", {}).get("status", "fail") != "fail"]
        by = "a page"
    print(f"\n{len(outcomes) - len(survived)}/{len(outcomes)} mutants caught by {by}"
          + (f"; survived: {', '.join(survived)}" if survived else "")
          + (f"; not caught by their tests: {', '.join(missed)}" if missed else "")
          + (f"; failing unmutated: {', '.join(broken)}" if broken else "")
          + f" ({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(outcomes, indent=1))
    return 2 if broken else 1 if survived or missed else 0


if __name__ == "__main__":
    sys.exit(main())
