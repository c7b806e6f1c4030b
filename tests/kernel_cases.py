"""What the kernel's test modules share: the device they run on, the tolerance of one rounding of a dtype,
q and k laid out as a projection leaves them, and a tiny Hugging Face Llama. Without CUDA the kernel runs on
the CPU through the Triton interpreter: each module's autouse fixture calls ``interpret_on_cpu`` (the kernel
module reads TRITON_INTERPRET at launch, so import order does not matter)."""

import os

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def interpret_on_cpu(monkeypatch):
    """Run Triton kernels under the interpreter where there is no GPU."""
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def assert_close_dtype(actual, expected):
    """Equal to within one unit in the last place of the output dtype (rtol: its epsilon): one rounding either way.
    The two paths round fp32 sums in different orders, and the Triton interpreter converts float32 to bf16 by
    dropping the low bits where a GPU rounds to nearest (ch-rope-gpu shows it), so half a unit is not enough."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    eps = EPS[actual.dtype]
    torch.testing.assert_close(actual, expected, rtol=eps, atol=max(eps * 1e-3, 1e-6 if eps > 1e-10 else 1e-12))


def qk(B=2, T=5, HQ=3, HK=1, D=16, dtype=torch.float32, seed=0):
    """q, k as a projection leaves them, (B, T, H, D) in memory, returned as (B, H, T, D) views."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, HQ, D, generator=g, dtype=torch.float64).to(DEVICE, dtype).transpose(1, 2)
    k = torch.randn(B, T, HK, D, generator=g, dtype=torch.float64).to(DEVICE, dtype).transpose(1, 2)
    return q, k


def tiny_llama(dtype=torch.float32):
    """A two-layer Llama of random weights (seed 0), on DEVICE in eval mode; a skip without transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return transformers.LlamaForCausalLM(cfg).to(DEVICE, dtype).eval()
