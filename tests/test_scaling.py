"""ropebook.scaling: each rule's formula, limits and errors (the Hugging Face oracle is in test_hf_oracle.py)."""

from __future__ import annotations

import dataclasses
import math

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
    (scaling.LongRoPE([2.0] * 32, [2.0] * 32, 4096), lambda th: th / 2.0, 1.0),
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
    (lambda: scaling.LongRoPE([1.0] * 3, [1.0] * 4, 16).inv_freq(8), ["LongRoPE", "short_factor", "dim // 2 = 4", "got 3"]),
    (lambda: scaling.LongRoPE([1.0] * 4, [1.0] * 5, 16).inv_freq(8), ["LongRoPE", "long_factor", "dim // 2 = 4", "got 5"]),
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
    fast, slow = rotations > 32 * 2, rotations < 1 / 2  # well outside the (truncated) ramp
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
    assert scaling.LongRoPE([1.0] * 4, [4.0] * 4, 4096).attention_factor == 1.0  # no extension: s = 1
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
