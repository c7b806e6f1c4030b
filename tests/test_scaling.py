"""ropebook.scaling: each rule's formula, limits and errors (the Hugging Face oracle is in test_hf_oracle.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import ropebook as rb
from ropebook import scaling

DIM, BASE = 64, 10000.0
PLAIN = rb.rope_frequencies(DIM, base=BASE)  # (32,) float64

# rule, expected frequencies as a function of the plain ones (None: checked elsewhere), attention factor
CLOSED_FORMS = [
    (scaling.Linear(4.0), lambda th: th / 4.0, 1.0),
    (scaling.NTKAware(8.0), lambda th: (BASE * 8.0 ** (DIM / (DIM - 2))) ** (-torch.arange(0, DIM, 2, dtype=torch.float64) / DIM), 1.0),
    (scaling.YaRN(1.0, 2048), lambda th: th, 1.0),  # s = 1: nothing changes
    (scaling.Llama3(1.0, 8192), lambda th: th, 1.0),
    (scaling.LongRoPE([2.0] * 32, [2.0] * 32, 4096, max_positions=4096), lambda th: th / 2.0, 1.0),
]

RULES = [
    scaling.Linear(2.0),
    scaling.NTKAware(2.0),
    scaling.DynamicNTK(2.0, 1024),
    scaling.YaRN(2.0, 1024),
    scaling.Llama3(2.0, 1024),
    scaling.LongRoPE([1.0] * 32, [2.0] * 32, 1024, max_positions=2048),
]

# (constructor, message parts): factor below 1 for every rule with a factor, and other bad fields
BAD_RULES = [
    (lambda: scaling.Linear(0.5), ["Linear", "factor", ">= 1", "factor=0.5"]),
    (lambda: scaling.NTKAware(0.0), ["NTKAware", "factor", ">= 1", "factor=0.0"]),
    (lambda: scaling.DynamicNTK(0.9, 2048), ["DynamicNTK", "factor", "factor=0.9"]),
    (lambda: scaling.YaRN(math.nan, 2048), ["YaRN", "factor", "factor=nan"]),
    (lambda: scaling.Llama3(-8.0, 8192), ["Llama3", "factor", "factor=-8.0"]),
    (lambda: scaling.DynamicNTK(2.0, 0), ["DynamicNTK", "original_max_positions", "positive integer", "=0"]),
    (lambda: scaling.Llama3(8.0, 8192, low_freq_factor=4.0, high_freq_factor=1.0), ["Llama3", "high_freq_factor > low_freq_factor", "low_freq_factor=4.0"]),
    (lambda: scaling.LongRoPE([1.0, -1.0], [1.0, 1.0], 16), ["LongRoPE", "short_factor", "positive", "-1.0"]),
    # without s the attention factor came out 1; Phi-3's is 1.19 (s from config.max_position_embeddings)
    (lambda: scaling.LongRoPE([1.0], [4.0], 4096), ["LongRoPE", "max_positions", "factor or attention_factor"]),
    (lambda: scaling.LongRoPE([1.0] * 3, [1.0] * 4, 16, factor=1.0).inv_freq(8), ["LongRoPE", "short_factor", "dim // 2 = 4", "got 3"]),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 5, 16, factor=1.0).inv_freq(8), ["LongRoPE", "long_factor", "dim // 2 = 4", "got 5"]),
    (lambda: scaling.NTKAware(2.0).inv_freq(2), ["NTKAware", "dim", "> 2", "dim=2"]),
]


@pytest.mark.parametrize("rule, expected, attention_factor", CLOSED_FORMS)
def test_closed_forms(rule, expected, attention_factor):
    torch.testing.assert_close(rb.rope_frequencies(DIM, base=BASE, scaling=rule), expected(PLAIN), rtol=1e-13, atol=0)
    assert rule.attention_factor == attention_factor


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_rules_are_frozen_hashable_and_documented(rule):
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.factor = 3.0
    hash(rule)
    assert isinstance(rule.attention_factor, float) and rule.attention_factor >= 1.0
    doc = type(rule).__doc__
    assert ">>>" in doc and ("arXiv" in doc or "Hugging Face" in doc or "r/LocalLLaMA" in doc)
    inv = rule.inv_freq(DIM, base=BASE)
    assert inv.shape == (DIM // 2,) and inv.dtype == torch.float64
    assert (inv <= PLAIN * (1 + 1e-12)).all()  # every rule slows rotations down or keeps them
    assert (inv[1:] < inv[:-1]).all()  # still decreasing frequencies


def test_ntk_aware_keeps_highest_and_interpolates_lowest_by_s():
    s = 8.0
    inv = rb.rope_frequencies(DIM, base=BASE, scaling=scaling.NTKAware(s))
    assert inv[0] == PLAIN[0] == 1.0
    # θ_{d/2-1} = b'^{-(d-2)/d} = θ_{d/2-1} / s exactly: the lowest frequency is interpolated by s
    torch.testing.assert_close(inv[-1], PLAIN[-1] / s, rtol=1e-12, atol=0)


def test_dynamic_ntk_is_plain_up_to_training_length_then_matches_ntk():
    rule = scaling.DynamicNTK(4.0, 1024)
    for L in (None, 1, 512, 1024):
        torch.testing.assert_close(rule.inv_freq(DIM, base=BASE, seq_len=L), PLAIN, rtol=0, atol=0)
    # at L = L_train·(2s − 1)/s the dynamic base equals the static NTK base with factor s
    L = 1024 * (2 * 4.0 - 1) / 4.0
    torch.testing.assert_close(rule.inv_freq(DIM, base=BASE, seq_len=L), scaling.NTKAware(4.0).inv_freq(DIM, base=BASE))
    longer = [rule.inv_freq(DIM, base=BASE, seq_len=L)[-1].item() for L in (2000, 4000, 8000)]
    assert longer[0] > longer[1] > longer[2]  # the longer the sequence, the slower the lowest pair


def test_yarn_ramp_keeps_fast_pairs_and_interpolates_slow_ones():
    rule = scaling.YaRN(16.0, 4096)
    inv = rule.inv_freq(128, base=BASE)
    plain = rb.rope_frequencies(128, base=BASE)
    rotations = 4096 * plain / (2 * math.pi)  # turns of each pair over the training context
    # exactly at β = 32 and α = 1 turns: the truncated ramp's ends are floor and ceil of those pairs' indices
    fast, slow = rotations > rule.beta_fast, rotations < rule.beta_slow
    assert (rule.beta_fast, rule.beta_slow) == (32, 1) and int(fast.sum()) > 0 and int(slow.sum()) > 0
    torch.testing.assert_close(inv[fast], plain[fast], rtol=1e-14, atol=0)
    torch.testing.assert_close(inv[slow], plain[slow] / 16, rtol=1e-14, atol=0)
    assert rule.attention_factor == pytest.approx(0.1 * math.log(16) + 1)
    assert scaling.YaRN(16.0, 4096, mscale=1.0, mscale_all_dim=1.0).attention_factor == 1.0  # DeepSeek ratio


def test_llama3_bands_by_wavelength():
    rule = scaling.Llama3(8.0, 8192)
    inv = rule.inv_freq(128, base=500000.0)
    plain = rb.rope_frequencies(128, base=500000.0)
    wavelen = 2 * math.pi / plain
    high, low = wavelen < 8192 / 4, wavelen > 8192 / 1
    torch.testing.assert_close(inv[high], plain[high], rtol=0, atol=0)
    torch.testing.assert_close(inv[low], plain[low] / 8, rtol=1e-15, atol=0)
    mid = ~high & ~low
    assert mid.any() and ((inv[mid] < plain[mid]) & (inv[mid] > plain[mid] / 8)).all()


def test_longrope_switches_at_training_length_and_attention_factor():
    rule = scaling.LongRoPE([1.0] * 4, [4.0] * 4, 4096, max_positions=131072)
    torch.testing.assert_close(rule.inv_freq(8, seq_len=4096), rb.rope_frequencies(8))
    torch.testing.assert_close(rule.inv_freq(8, seq_len=4097), rb.rope_frequencies(8) / 4)
    assert rule.attention_factor == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert scaling.LongRoPE([1.0] * 4, [4.0] * 4, 4096, max_positions=4096).attention_factor == 1.0  # no extension: s = 1
    assert scaling.LongRoPE([1.0] * 4, [4.0] * 4, 4096, factor=2.0, attention_factor=1.5).attention_factor == 1.5


def test_attention_factor_scales_the_rotated_vector():
    rule = scaling.YaRN(8.0, 64)
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    y = rb.apply_rope(x, scaling=rule)
    torch.testing.assert_close(y.norm(dim=-1), rule.attention_factor * x.norm(dim=-1))


@pytest.mark.parametrize("make, words", BAD_RULES)
def test_bad_rule_message(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


NAN = math.nan

# (constructor or call, pattern): fields that used to pass silently (NaN/zero outputs) or fail with a raw error
BAD_FIELDS = [
    (lambda: scaling.YaRN(2.0, 16, attention_factor=NAN), r"YaRN: attention_factor must be None or a positive finite number, got attention_factor=nan"),
    (lambda: scaling.YaRN(2.0, 16, attention_factor=0.0), r"YaRN: attention_factor must be .* got attention_factor=0\.0"),
    (lambda: scaling.YaRN(2.0, 16, attention_factor="x"), r"YaRN: attention_factor must be .* got attention_factor='x'"),
    (lambda: scaling.YaRN(2.0, 16, beta_fast=2.0, beta_slow=4.0), r"YaRN: need beta_fast >= beta_slow > 0, got beta_fast=2\.0, beta_slow=4\.0"),
    (lambda: scaling.YaRN(2.0, 16, beta_fast=-1), r"YaRN: beta_fast must be a positive finite number, got beta_fast=-1"),
    (lambda: scaling.YaRN(2.0, 16, beta_fast=NAN), r"YaRN: beta_fast must be a positive finite number, got beta_fast=nan"),
    (lambda: scaling.YaRN(2.0, 16, beta_slow=math.inf), r"YaRN: beta_slow must be a positive finite number, got beta_slow=inf"),
    (lambda: scaling.YaRN(2.0, 16, mscale=NAN, mscale_all_dim=1.0), r"YaRN: mscale must be None or a finite number >= 0, got mscale=nan"),
    (lambda: scaling.YaRN(2.0, 16, mscale=1.0, mscale_all_dim=-0.7), r"YaRN: mscale_all_dim must be .* got mscale_all_dim=-0\.7"),
    (lambda: scaling.YaRN(2.0, 16, truncate="no"), r"YaRN: truncate must be True or False, got truncate='no'"),
    (lambda: scaling.YaRN(2.0, 16).inv_freq(16, base=1.0), r"YaRN\.inv_freq: base must be a finite number > 1, got base=1\.0"),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 4, 16, factor=NAN), r"LongRoPE: factor must be a finite number >= 1, got factor=nan"),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 4, 16, attention_factor=-1.0), r"LongRoPE: attention_factor must be .* got attention_factor=-1\.0"),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 4, 1, max_positions=4), r"LongRoPE: original_max_positions must be >= 2 .* got original_max_positions=1"),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 4, 16, max_positions=0), r"LongRoPE: max_positions must be a positive integer, got max_positions=0"),
    (lambda: scaling.LongRoPE("ab", [1.0] * 2, 16), r"LongRoPE: short_factor must be a sequence of numbers, got short_factor='ab'"),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 4, 16, factor=1.0).inv_freq(8, seq_len=NAN), r"LongRoPE\.inv_freq: seq_len must be None or a finite number, got seq_len=nan"),
    (lambda: scaling.Llama3(8.0, 8192, low_freq_factor="1"), r"Llama3: low_freq_factor must be a positive finite number, got low_freq_factor='1'"),
    (lambda: scaling.DynamicNTK(2.0, 16).inv_freq(8, seq_len="abc"), r"DynamicNTK\.inv_freq: seq_len must be None or a finite number, got seq_len='abc'"),
    (lambda: scaling.DynamicNTK(2.0, 16).inv_freq(8, seq_len=NAN), r"DynamicNTK\.inv_freq: seq_len must be None or a finite number, got seq_len=nan"),
]


@pytest.mark.parametrize("make, pattern", BAD_FIELDS)
def test_bad_field_names_rule_argument_and_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_inv_freq_checks_dim_and_base_like_rope_frequencies(rule):
    name = type(rule).__name__
    with pytest.raises(ValueError, match=rf"{name}\.inv_freq: dim must be a positive even integer, got dim=5"):
        rule.inv_freq(5)
    with pytest.raises(ValueError, match=rf"{name}\.inv_freq: base must be a finite number > 1, got base=-1\.0"):
        rule.inv_freq(DIM, base=-1.0)


def test_values_hugging_face_accepts_keep_their_meaning():
    # Hugging Face reads `beta_fast or 32`, `beta_slow or 1`: None and 0 mean the defaults, now visibly so
    default = scaling.YaRN(2.0, 16)
    for beta_fast, beta_slow in ((None, None), (0, 0), (32, 1)):
        rule = scaling.YaRN(2.0, 16, beta_fast=beta_fast, beta_slow=beta_slow)
        assert rule == default and (rule.beta_fast, rule.beta_slow) == (32.0, 1.0)
    equal = scaling.YaRN(4.0, 64, beta_fast=2.0, beta_slow=2.0)  # Hugging Face warns only for beta_fast < beta_slow
    assert torch.isfinite(equal.inv_freq(DIM)).all()
    # truncate=None (a null in a config) is falsy in Hugging Face: no truncation, as before
    torch.testing.assert_close(scaling.YaRN(4.0, 64, truncate=None).inv_freq(DIM),
                               scaling.YaRN(4.0, 64, truncate=False).inv_freq(DIM), rtol=0, atol=0)
    rule = scaling.DynamicNTK(2.0, 16)  # seq_len as a tensor (Hugging Face passes max(position_ids) + 1) or numpy int
    for L in (torch.tensor(40), np.int64(40), 40.0):
        torch.testing.assert_close(rule.inv_freq(8, seq_len=L), rule.inv_freq(8, seq_len=40), rtol=0, atol=0)


def test_yarn_beta_none_and_zero_match_hugging_face_bit_for_bit():
    pytest.importorskip("transformers")
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048, "beta_fast": 0, "beta_slow": None}
    config = LlamaConfig(hidden_size=256, num_attention_heads=4, head_dim=64, max_position_embeddings=8192,
                         rope_parameters={"rope_theta": 10000.0, **params})
    hf_inv, hf_factor = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    rule = scaling.YaRN(4.0, 2048, beta_fast=0, beta_slow=None)
    assert torch.equal(rb.rope_frequencies(64, scaling=rule, dtype=torch.float32), hf_inv)
    assert rule.attention_factor == hf_factor


@pytest.mark.parametrize("factor", [2.0, 3.0, 7.5])
def test_ntk_aware_is_dynamic_ntk_frozen_at_its_length_even_between_integers(factor):
    """NTKAware's docstring: it is the dynamic rule at L = (2 − 1/s)·L_train. For s = 3 that length is 1666.67;
    DynamicNTK floored a float seq_len (Hugging Face does not), and was off by 6.7e-4 relative there."""
    L_train = 1000
    L = (2 - 1 / factor) * L_train
    torch.testing.assert_close(scaling.DynamicNTK(factor, L_train).inv_freq(64, seq_len=L),
                               scaling.NTKAware(factor).inv_freq(64), rtol=1e-13, atol=0)


def test_a_numpy_seq_len_is_taken_as_a_python_number():
    """A float32 seq_len made DynamicNTK's new base float32 (1.6e-9 off) once int() no longer converted it."""
    rule = scaling.DynamicNTK(2.0, 8)
    torch.testing.assert_close(rule.inv_freq(64, seq_len=np.float32(16.5)), rule.inv_freq(64, seq_len=16.5), rtol=0, atol=0)
    torch.testing.assert_close(rule.inv_freq(64, seq_len=np.int64(20)), rule.inv_freq(64, seq_len=20), rtol=0, atol=0)
