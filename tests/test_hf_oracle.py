"""ropebook against Hugging Face transformers (offline): half layout, partial rotary, every scaling rule.

What we observed (transformers 5.x, torch 2.13 CPU):

- frequencies: with ``dtype=torch.float32`` ours equal ``ROPE_INIT_FUNCTIONS`` bit for bit (max |Δ| = 0)
  for every rule and configuration below; our default float64 frequencies differ from Hugging Face's
  float32 ones by a few fp32 ulps (max relative |Δ| ≈ 3.2e-7, Llama 3.1);
- attention factors: identical floats (max |Δ| = 0);
- rotated q/k in fp32 (positions up to 4105, |x| ~ N(0, 1)): max |Δ| ≈ 8e-4 (6e-6 at positions < 64), all of it from Hugging Face
  forming the angles in fp32 (our angles are float64); with the same float64 cos/sin fed to Hugging Face's
  ``apply_rotary_pos_emb`` the difference is ≤ 1e-15.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import ropebook as rb
from ropebook import scaling

transformers = pytest.importorskip("transformers")
from transformers import GPTNeoXConfig, LlamaConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.gpt_neox import modeling_gpt_neox as neox  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb  # noqa: E402

PHI3_SHORT = [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
PHI3_LONG = [1.0, 1.1, 1.3, 1.6, 2.0, 3.0, 4.5, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0]

# id: (head_dim, base, max_position_embeddings, HF rope_parameters, our rule, seq_lens to evaluate at)
CONFIGS = {
    "default": (64, 10000.0, 2048, {"rope_type": "default"}, None, [None]),
    "default-500k": (128, 500000.0, 8192, {"rope_type": "default"}, None, [None]),
    "linear-2": (64, 10000.0, 4096, {"rope_type": "linear", "factor": 2.0}, scaling.Linear(2.0), [None]),
    "linear-8": (128, 10000.0, 4096, {"rope_type": "linear", "factor": 8.0}, scaling.Linear(8.0), [None]),
    "dynamic-2": (64, 10000.0, 2048, {"rope_type": "dynamic", "factor": 2.0}, scaling.DynamicNTK(2.0, 2048),
                  [None, 1, 2048, 2049, 4096, 10000]),
    "dynamic-4.5": (128, 500000.0, 4096, {"rope_type": "dynamic", "factor": 4.5}, scaling.DynamicNTK(4.5, 4096),
                    [100, 4097, 30000]),
    "yarn-4": (64, 10000.0, 8192, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048},
               scaling.YaRN(4.0, 2048), [None]),
    "yarn-16-betas": (128, 10000.0, 65536, {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096,
                                            "beta_fast": 16.0, "beta_slow": 2.0},
                      scaling.YaRN(16.0, 4096, beta_fast=16.0, beta_slow=2.0), [None]),
    "yarn-deepseek-mscale": (64, 10000.0, 163840, {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                                                   "mscale": 1.0, "mscale_all_dim": 0.707},
                             scaling.YaRN(40.0, 4096, mscale=1.0, mscale_all_dim=0.707), [None]),
    "yarn-no-truncate": (64, 10000.0, 8192, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048,
                                             "truncate": False},
                         scaling.YaRN(4.0, 2048, truncate=False), [None]),
    "yarn-given-attention": (64, 10000.0, 8192, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048,
                                                 "attention_factor": 0.9},
                             scaling.YaRN(4.0, 2048, attention_factor=0.9), [None]),
    # the slowest pair turns ~1.3 times within L_train, more than beta_slow = 1: the ramp's upper bound falls
    # past the last pair (index 33 of 32 pairs) and is clamped at dim - 1, as Hugging Face clamps, not at dim/2 - 1
    "yarn-long-train": (64, 10000.0, 262144, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 65536},
                        scaling.YaRN(4.0, 65536), [None]),
    "llama3.1": (128, 500000.0, 131072, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8192}, scaling.Llama3(8.0, 8192), [None]),
    "llama3-small": (64, 10000.0, 8192, {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
                                         "original_max_position_embeddings": 1024},
                     scaling.Llama3(4.0, 1024, low_freq_factor=2.0, high_freq_factor=8.0), [None]),
    "longrope-phi3": (32, 10000.0, 131072, {"rope_type": "longrope", "short_factor": PHI3_SHORT, "long_factor": PHI3_LONG,
                                            "original_max_position_embeddings": 4096},
                      scaling.LongRoPE(PHI3_SHORT, PHI3_LONG, 4096, max_positions=131072), [None, 4096, 4097, 100000]),
    "longrope-factor": (32, 10000.0, 8192, {"rope_type": "longrope", "short_factor": PHI3_SHORT, "long_factor": PHI3_LONG,
                                            "original_max_position_embeddings": 4096, "factor": 3.0},
                        scaling.LongRoPE(PHI3_SHORT, PHI3_LONG, 4096, factor=3.0), [None, 5000]),
}

# id: (config id, batch row offsets, T): rotated q/k through LlamaRotaryEmbedding + apply_rotary_pos_emb
APPLY_CASES = [
    ("default", (0, 0), 64),
    ("default", (0, 1000), 33),  # KV-cache decoding: rows at different offsets
    ("default-500k", (5, 4000), 100),
    ("linear-8", (0, 0), 64),
    ("yarn-4", (0, 3000), 64),
    ("yarn-deepseek-mscale", (0, 0), 64),
    ("llama3.1", (0, 4000), 64),
    ("longrope-phi3", (0, 0), 64),  # short factors
    ("longrope-phi3", (0, 4050), 50),  # max position 4099 > 4096: long factors
    ("dynamic-2", (0, 0), 64),
    ("dynamic-2", (0, 4000), 64),  # beyond the training length: the base grows
]


def _config(head_dim, base, max_pos, params, cls=LlamaConfig):
    return cls(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim, max_position_embeddings=max_pos,
               rope_parameters={"rope_theta": base, **params})


def _hf_init(case_id, seq_len):
    head_dim, base, max_pos, params, rule, _ = CONFIGS[case_id]
    rope_type = params["rope_type"]
    if rope_type == "default":
        return None
    return ROPE_INIT_FUNCTIONS[rope_type](_config(head_dim, base, max_pos, params), "cpu", seq_len=seq_len)


FREQ_CASES = [(cid, L) for cid, cfg in CONFIGS.items() for L in cfg[5] if cfg[4] is not None]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case_id, seq_len", FREQ_CASES)
def test_frequencies_and_attention_factor_match_rope_init_functions(case_id, seq_len):
    head_dim, base, _, _, rule, _ = CONFIGS[case_id]
    hf_inv, hf_factor = _hf_init(case_id, seq_len)
    ours32 = rb.rope_frequencies(head_dim, base=base, scaling=rule, seq_len=seq_len, dtype=torch.float32)
    assert torch.equal(ours32, hf_inv), f"max |Δ| = {(ours32 - hf_inv).abs().max().item()}"  # bit for bit
    ours64 = rb.rope_frequencies(head_dim, base=base, scaling=rule, seq_len=seq_len)
    rel = ((ours64 - hf_inv.double()) / ours64).abs().max().item()
    assert rel <= 2.0**-21, rel  # float64 truth vs HF's fp32 formula (several fp32 roundings): a few fp32 ulps
    assert rule.attention_factor == hf_factor


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case_id, offsets, T", APPLY_CASES)
def test_half_layout_matches_llama_rotary_embedding(case_id, offsets, T):
    head_dim, base, max_pos, params, rule, _ = CONFIGS[case_id]
    g = torch.Generator().manual_seed(0)
    q = torch.randn(len(offsets), 4, T, head_dim, generator=g)  # (B, H, T, D)
    k = torch.randn(len(offsets), 2, T, head_dim, generator=g)  # grouped-query keys
    position_ids = torch.tensor(offsets)[:, None] + torch.arange(T)  # (B, T)
    cos, sin = LlamaRotaryEmbedding(_config(head_dim, base, max_pos, params))(q, position_ids)  # (B, T, D)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, cos, sin)

    positions = position_ids[:, None, :]  # (B, 1, T)
    ours_q = rb.apply_rope(q, positions, base=base, scaling=rule)
    ours_k = rb.apply_rope(k, positions, base=base, scaling=rule)
    # Hugging Face forms angles m·θ in fp32: error up to ~ m·θ_0·2^-23 + ulp(m)/2 per angle
    max_pos_seen = int(position_ids.max())
    factor = 1.0 if rule is None else rule.attention_factor
    atol = factor * 4.0 * (max_pos_seen * 2.0**-23 + 2.0**-20) * 3  # |x_a| + |x_b| ≲ 8 for N(0, 1) draws
    torch.testing.assert_close(ours_q, hf_q, rtol=0, atol=atol)
    torch.testing.assert_close(ours_k, hf_k, rtol=0, atol=atol)

    # the rotation formula itself, with identical float64 cos/sin: equal to rounding
    c, s = rb.rope_cos_sin(positions[:, 0], head_dim, base=base, scaling=rule,
                           seq_len=max_pos_seen + 1, dtype=torch.float64)  # (B, T, D/2)
    hf_q64, _ = apply_rotary_pos_emb(q.double(), k.double(), torch.cat((c, c), -1), torch.cat((s, s), -1))
    torch.testing.assert_close(rb.apply_rope(q.double(), positions, base=base, scaling=rule), hf_q64, rtol=0, atol=1e-14)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("T", [1, 2048, 2049, 5000])
def test_dynamic_module_matches_hf_at_several_lengths(T):
    head_dim, base, max_pos, params, rule, _ = CONFIGS["dynamic-2"]
    q = torch.randn(1, 1, T, head_dim)
    cos, sin = LlamaRotaryEmbedding(_config(head_dim, base, max_pos, params))(q, torch.arange(T)[None])
    hf_q, _ = apply_rotary_pos_emb(q, q, cos, sin)
    ours, _ = rb.RotaryEmbedding(head_dim, base=base, scaling=rule)(q, q)
    torch.testing.assert_close(ours, hf_q, rtol=0, atol=12 * (T * 2.0**-23 + 2.0**-20))


@pytest.mark.parametrize("rotary_pct, T", [(0.25, 40), (0.5, 300)])
def test_partial_rotary_matches_gpt_neox(rotary_pct, T):
    head_dim = 64
    config = GPTNeoXConfig(hidden_size=4 * head_dim, num_attention_heads=4, max_position_embeddings=2048,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": rotary_pct})
    q = torch.randn(2, 4, T, head_dim)
    cos, sin = neox.GPTNeoXRotaryEmbedding(config)(q, torch.arange(T)[None].expand(2, T))
    hf_q, _ = neox.apply_rotary_pos_emb(q, q, cos, sin)
    ours = rb.apply_rope(q, rotary_dim=int(head_dim * rotary_pct))
    torch.testing.assert_close(ours, hf_q, rtol=0, atol=12 * (T * 2.0**-23 + 2.0**-20))
    torch.testing.assert_close(ours[..., int(head_dim * rotary_pct):], q[..., int(head_dim * rotary_pct):], rtol=0, atol=0)


def test_ntk_aware_is_hf_default_with_the_changed_base():
    head_dim, base, factor = 64, 10000.0, 8.0
    new_base = base * factor ** (head_dim / (head_dim - 2))
    config = _config(head_dim, new_base, 4096, {"rope_type": "default"})
    hf_inv = LlamaRotaryEmbedding(config).inv_freq
    ours = rb.rope_frequencies(head_dim, base=base, scaling=scaling.NTKAware(factor), dtype=torch.float32)
    torch.testing.assert_close(ours, hf_inv, rtol=2.0**-23, atol=0)


# (head_dim, base, max_position_embeddings, HF rope_parameters, our rule, partial_rotary_factor, seq_len):
# YaRN's correction range and the NTK exponent d/(d − 2) depend on the rotated width, not on head_dim
PARTIAL_CASES = {
    "yarn-half": (64, 10000.0, 8192, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048},
                  scaling.YaRN(4.0, 2048), 0.5, None),
    "dynamic-quarter": (64, 10000.0, 2048, {"rope_type": "dynamic", "factor": 2.0}, scaling.DynamicNTK(2.0, 2048),
                        0.25, 4096),
    "longrope-half": (32, 10000.0, 131072, {"rope_type": "longrope", "short_factor": PHI3_SHORT[:8],
                                            "long_factor": PHI3_LONG[:8], "original_max_position_embeddings": 4096},
                      scaling.LongRoPE(PHI3_SHORT[:8], PHI3_LONG[:8], 4096, max_positions=131072), 0.5, 100000),
    "linear-half": (64, 10000.0, 4096, {"rope_type": "linear", "factor": 2.0}, scaling.Linear(2.0), 0.5, None),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case_id", PARTIAL_CASES)
def test_partial_rotary_frequencies_match_rope_init_functions(case_id):
    head_dim, base, max_pos, params, rule, partial, seq_len = PARTIAL_CASES[case_id]
    config = _config(head_dim, base, max_pos, {**params, "partial_rotary_factor": partial})
    hf_inv, hf_factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, "cpu", seq_len=seq_len)
    rotary_dim = int(head_dim * partial)
    assert hf_inv.shape == (rotary_dim // 2,)  # HF read the factor: frequencies for the rotated width only
    ours32 = rb.rope_frequencies(rotary_dim, base=base, scaling=rule, seq_len=seq_len, dtype=torch.float32)
    assert torch.equal(ours32, hf_inv), f"max |Δ| = {(ours32 - hf_inv).abs().max().item()}"
    assert rule.attention_factor == hf_factor
    if not isinstance(rule, scaling.LongRoPE):  # (LongRoPE refuses head_dim: its factors count the rotated pairs)
        # the mistake the test is for: the rule applied to head_dim, its first pairs kept
        wrong = rb.rope_frequencies(head_dim, base=base, scaling=rule, seq_len=seq_len, dtype=torch.float32)
        assert not torch.equal(wrong[: rotary_dim // 2], hf_inv)


def _hf_rope(config, seq_len):
    """Hugging Face's frequencies and attention factor for a config, as its rotary modules compute them."""
    kind = config.rope_parameters["rope_type"]
    if kind == "default":
        dim = int(config.head_dim * config.rope_parameters.get("partial_rotary_factor", 1.0))
        base = config.rope_parameters["rope_theta"]
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0
    return ROPE_INIT_FUNCTIONS[kind](config, "cpu", seq_len=seq_len)


FROM_CONFIG_CASES = ([(cid, cfg[2:4], None, L) for cid, cfg in CONFIGS.items() for L in cfg[5]]
                     + [(cid, (cfg[2], {**cfg[3], "partial_rotary_factor": cfg[5]}), cfg[5], cfg[6])
                        for cid, cfg in PARTIAL_CASES.items()])


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case_id, config_args, partial, seq_len", FROM_CONFIG_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in FROM_CONFIG_CASES])
def test_from_hf_config_reads_what_hugging_face_reads(case_id, config_args, partial, seq_len):
    """from_hf_config, given only the config, gives Hugging Face's frequencies bit for bit in float32 and its
    attention factor: the base, the rule, its lengths and the rotated width all read as transformers reads them."""
    head_dim, base = (CONFIGS if case_id in CONFIGS else PARTIAL_CASES)[case_id][:2]
    max_pos, params = config_args
    config = _config(head_dim, base, max_pos, params)
    kw = scaling.from_hf_config(config)
    hf_inv, hf_factor = _hf_rope(config, seq_len)
    assert (kw["dim"], kw["base"], kw["rotary_dim"]) == (head_dim, base, 2 * hf_inv.numel())
    ours = rb.rope_frequencies(kw["rotary_dim"], base=kw["base"], scaling=kw["scaling"], seq_len=seq_len, dtype=torch.float32)
    assert torch.equal(ours, hf_inv), f"max |Δ| = {(ours - hf_inv).abs().max().item()}"
    assert (1.0 if kw["scaling"] is None else kw["scaling"].attention_factor) == hf_factor
    # the same from a dict of the config's attributes, and in transformers 4's spelling
    as_dict = {"head_dim": head_dim, "max_position_embeddings": max_pos, "rope_parameters": {"rope_theta": base, **params}}
    assert scaling.from_hf_config(as_dict) == kw
    old = {k: v for k, v in params.items() if k not in ("rope_type", "partial_rotary_factor")}
    v4 = {"head_dim": head_dim, "max_position_embeddings": max_pos, "rope_theta": base,
          "rope_scaling": {"rope_type": params["rope_type"], **old} if params["rope_type"] != "default" else None,
          "partial_rotary_factor": params.get("partial_rotary_factor")}
    assert scaling.from_hf_config(v4) == kw


@pytest.mark.filterwarnings("ignore")
def test_rotary_embedding_from_a_real_models_config_matches_its_rotary_module():
    """The module built from a Llama 3.1 config rotates as LlamaRotaryEmbedding + apply_rotary_pos_emb do, to
    Hugging Face's own fp32 angle error; from a GPT-NeoX config with partial rotary, as GPT-NeoX's module."""
    head_dim, base, max_pos, params, _, _ = CONFIGS["llama3.1"]
    config = _config(head_dim, base, max_pos, params)
    T, start = 16, 9000
    q = torch.randn(2, 4, T, head_dim, generator=torch.Generator().manual_seed(0))
    position_ids = start + torch.arange(T)[None].expand(2, T)
    cos, sin = LlamaRotaryEmbedding(config)(q, position_ids)
    hf_q, _ = apply_rotary_pos_emb(q, q, cos, sin)
    ours, _ = rb.RotaryEmbedding.from_hf_config(config)(q, q, offset=start)
    torch.testing.assert_close(ours, hf_q, rtol=0, atol=12 * ((start + T) * 2.0**-23 + 2.0**-20))
    neox_config = GPTNeoXConfig(hidden_size=256, num_attention_heads=4, max_position_embeddings=2048,
                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})
    q = q[..., :64]  # GPT-NeoX's heads: 256 / 4
    cos, sin = neox.GPTNeoXRotaryEmbedding(neox_config)(q, torch.arange(T)[None].expand(2, T))
    hf_q, _ = neox.apply_rotary_pos_emb(q, q, cos, sin)
    rope = rb.RotaryEmbedding.from_hf_config(neox_config)
    assert (rope.dim, rope.rotary_dim) == (64, 16)
    torch.testing.assert_close(rope(q, q)[0], hf_q, rtol=0, atol=12 * (T * 2.0**-23 + 2.0**-20))


@pytest.mark.parametrize("config, words", [
    ({"head_dim": 64, "rope_parameters": {"rope_type": "proportional", "rope_theta": 1e4}},
     ["rope_type must be one of", "'proportional'"]),
    ({"head_dim": 64, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}},
     ["rope_type='yarn' needs rope_parameters['original_max_position_embeddings']"]),
    ({"head_dim": 64, "rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}},
     ["needs config['max_position_embeddings']"]),
    ({"hidden_size": 256, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}},
     ["head size needs config['head_dim'] or config['hidden_size'] and config['num_attention_heads'], got none"]),
    ({"head_dim": 128, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}},
     ["multimodal RoPE", "mrope_section=[16, 24, 24]", "does not implement"]),
    ({"model_type": "no-such-model", "head_dim": 64}, ["model_type='no-such-model'", "without model_type"]),
    ({"head_dim": 64, "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}},
     ["per layer type ['full_attention', 'sliding_attention']", "layer_type=None"]),
])
def test_from_hf_config_bad_input_message(config, words):
    with pytest.raises(ValueError) as info:
        scaling.from_hf_config(config)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_from_hf_config_per_layer_type():
    config = {"head_dim": 64, "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                                  "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    assert scaling.from_hf_config(config, layer_type="full_attention")["base"] == 1e6
    assert scaling.from_hf_config(config, layer_type="sliding_attention")["base"] == 1e4


@pytest.mark.filterwarnings("ignore")
def test_rotary_embedding_from_gptj_config_matches_gptj():
    """GPT-J's config gives the rotated width itself (rotary_dim) and no base (10 000 in its code); its modeling
    code rotates the interleaved layout of the first rotary_dim features of each head, (B, T, H, D)."""
    from transformers import GPTJConfig
    from transformers.models.gptj import modeling_gptj as gptj

    config = GPTJConfig(n_embd=256, n_head=4, rotary_dim=16, n_positions=64)
    kw = scaling.from_hf_config(config)
    assert (kw["dim"], kw["base"], kw["rotary_dim"], kw["scaling"], kw["layout"]) == (64, 10000.0, 16, None, "interleaved")
    B, T = 2, 40
    q = torch.randn(B, T, 4, 64, generator=torch.Generator().manual_seed(1))  # GPT-J's (B, T, H, D)
    sincos = gptj.create_sinusoidal_positions(64, 16)[:T]  # (T, 16): sin of 8 frequencies, then cos
    sin, cos = sincos[None, :, :8], sincos[None, :, 8:]
    hf_q = torch.cat((gptj.apply_rotary_pos_emb(q[..., :16], sin, cos), q[..., 16:]), dim=-1)
    rope = rb.RotaryEmbedding.from_hf_config(config)  # the layout read from the model type
    ours = rope(q.transpose(1, 2), q.transpose(1, 2))[0].transpose(1, 2)
    torch.testing.assert_close(ours, hf_q, rtol=0, atol=12 * (T * 2.0**-23 + 2.0**-20))



@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name, config_json, expected", [
    # DeepSeek-V3's config.json: no head_dim; RoPE on qk_rope_head_dim; YaRN in rope_scaling with "type"; interleaved
    ("deepseek-v3", {"model_type": "deepseek_v3", "hidden_size": 7168, "num_attention_heads": 128, "qk_rope_head_dim": 64,
                     "max_position_embeddings": 163840, "rope_theta": 10000,
                     "rope_scaling": {"type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                                      "original_max_position_embeddings": 4096}},
     dict(dim=64, base=10000.0, rotary_dim=64, layout="interleaved")),
    # GPT-NeoX's older spellings: rotary_emb_base for the base, rotary_pct (default 0.25) for the rotated share
    ("gpt-neox", {"model_type": "gpt_neox", "hidden_size": 2048, "num_attention_heads": 16, "rotary_emb_base": 50000},
     dict(dim=128, base=50000.0, rotary_dim=32, layout="half")),
    # Phi-3's config.json: original_max_position_embeddings at the top level, LongRoPE in rope_scaling
    ("phi-3", {"model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 131072,
               "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
               "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 48, "long_factor": [2.0] * 48}},
     dict(dim=96, base=10000.0, rotary_dim=96, layout="half")),
])
def test_from_hf_config_reads_a_checkpoints_config_json(name, config_json, expected):
    """A config.json as checkpoints ship it (older spellings, fields outside the rope parameters) reads as the
    model's transformers config reads it: the same frequencies and attention factor as ROPE_INIT_FUNCTIONS."""
    from transformers import AutoConfig

    kw = scaling.from_hf_config(config_json)
    assert {key: kw[key] for key in expected} == expected
    hf_config = AutoConfig.for_model(**config_json)
    kind = hf_config.rope_parameters["rope_type"]
    seq_len = 5000 if kind == "longrope" else None  # past Phi-3's 4096: the long factors
    hf_inv, hf_factor = (ROPE_INIT_FUNCTIONS[kind](hf_config, "cpu", seq_len=seq_len) if kind != "default"
                         else (None, 1.0))
    ours = rb.rope_frequencies(kw["rotary_dim"], base=kw["base"], scaling=kw["scaling"], seq_len=seq_len, dtype=torch.float32)
    if hf_inv is not None:
        assert torch.equal(ours, hf_inv), f"max |Δ| = {(ours - hf_inv).abs().max().item()}"
    assert (1.0 if kw["scaling"] is None else kw["scaling"].attention_factor) == hf_factor
    if name == "phi-3":
        assert kw["scaling"].original_max_positions == 4096 and round(hf_factor, 4) == 1.1902


def test_from_hf_config_reads_the_text_config_of_a_multimodal_model():
    from transformers import Gemma3Config

    config = Gemma3Config()  # vision tower + Gemma 3 text model, RoPE per layer type
    full = scaling.from_hf_config(config, layer_type="full_attention")
    assert full == scaling.from_hf_config(config.get_text_config(), layer_type="full_attention")
    assert (full["base"], full["dim"]) == (1_000_000.0, config.get_text_config().head_dim)


def test_interleaved_model_types_rotate_pairs_in_the_installed_transformers():
    """HF_INTERLEAVED_MODEL_TYPES against transformers' own source: each listed family's rotary code takes the
    features two by two (x[..., 0::2], x[..., 1::2]) or views them as complex numbers; Llama's does not."""
    import importlib
    import inspect

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    def rotary_source(model_type):
        config_class = CONFIG_MAPPING[model_type]
        module = importlib.import_module(config_class.__module__.replace("configuration_", "modeling_"))
        return "".join(inspect.getsource(getattr(module, name)) for name in ("rotate_half", "apply_rotary_emb",
                                                                           "rotate_every_two") if hasattr(module, name))

    def pairs_two_by_two(source):
        return ("::2]" in source and "1::2]" in source) or "view_as_complex" in source

    for model_type in scaling.HF_INTERLEAVED_MODEL_TYPES:
        assert pairs_two_by_two(rotary_source(model_type)), model_type
    for model_type in ("llama", "mistral", "qwen2", "gpt_neox", "phi3"):
        assert not pairs_two_by_two(rotary_source(model_type)), model_type
        assert scaling.from_hf_config(CONFIG_MAPPING[model_type]())["layout"] == "half"
    from transformers import DeepseekV3Config

    assert DeepseekV3Config().rope_interleave and scaling.from_hf_config(DeepseekV3Config())["layout"] == "interleaved"
    assert scaling.from_hf_config(DeepseekV3Config(rope_interleave=False))["layout"] == "half"


def test_from_hf_config_without_model_type_reads_the_dict_as_it_is():
    """Without model_type nothing builds the transformers config: the dict is read as it stands, DeepSeek's
    qk_rope_head_dim before hidden_size // num_attention_heads (7168 / 128 = 56), the half layout unless
    rope_interleave says otherwise."""
    deepseek = {"hidden_size": 7168, "num_attention_heads": 128, "qk_rope_head_dim": 64, "max_position_embeddings": 163840,
                "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                                                      "original_max_position_embeddings": 4096}}
    kw = scaling.from_hf_config(deepseek)
    assert (kw["dim"], kw["rotary_dim"], kw["layout"]) == (64, 64, "half")
    assert kw == {**scaling.from_hf_config({**deepseek, "model_type": "deepseek_v3"}), "layout": "half"}
    assert scaling.from_hf_config({**deepseek, "rope_interleave": True})["layout"] == "interleaved"
