"""Context-extension rules: how each one rescales the RoPE frequencies θ_i.

Every rule is a small frozen dataclass with an ``attention_factor`` attribute
(Hugging Face multiplies cos and sin by it, so attention logits grow by its
square) and a method ``inv_freq(dim, *, base, seq_len, dtype, device)``. The
formulas follow Hugging Face ``transformers.modeling_rope_utils``
(``ROPE_INIT_FUNCTIONS``) operation by operation, so that in float32 they give
the same bits as those functions called with an integer ``seq_len``; in float64
(the default here) they are the exact values. (Hugging Face's rotary module
passes ``seq_len`` as a tensor, so its dynamic rule forms the new base in float32
and can differ from these by an ulp or two.)

Chapter: none yet (the plan's context-extension chapter is not written); ``ch-rope-d-dims`` introduces
the wavelengths these rules act on.

>>> import ropebook as rb
>>> rb.scaling.Linear(4.0).inv_freq(4, base=10000.0)
tensor([0.2500, 0.0025], dtype=torch.float64)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ropebook._validate import (_check_base, _check_bool, _check_dim, _check_float_dtype, _check_positive_int,
                                _check_positive_number)

__all__ = ["Linear", "NTKAware", "DynamicNTK", "YaRN", "Llama3", "LongRoPE", "from_hf_config"]


def _inv_freq(dim: int, base: float, dtype: torch.dtype, device=None) -> Tensor:
    """θ_i = base^(-2i/dim), written as Hugging Face writes it."""
    exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=device).to(dtype) / dim  # (dim/2,)
    return 1.0 / (base**exponent)


def _check_factor(rule: str, factor: float, name: str = "factor") -> None:
    # a Python int or float (numpy's float64 is one): a Fraction or a sympy number would pass a Real check here
    # and then fail inside torch arithmetic with an error that does not name the factor
    if isinstance(factor, bool) or not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"{rule}: {name} must be a finite number >= 1, got {name}={factor!r}")


def _check_dim_base(fn: str, dim, base, dtype) -> tuple[int, float]:
    """The checks ``rope_frequencies`` makes, for callers of a rule's ``inv_freq`` directly; returns dim and
    base as an int and a float (numpy scalars too: a numpy float32 base would compute in float32)."""
    dim, base = _check_dim(fn, dim), _check_base(fn, base)
    _check_float_dtype(fn, dtype, angles=True)  # frequencies in fp32 or better
    return dim, base


def _seq_len(fn: str, seq_len):
    """None, or the current length as a Python number (a one-element tensor is read out)."""
    if seq_len is None:
        return None
    value = seq_len.item() if isinstance(seq_len, Tensor) and seq_len.numel() == 1 else seq_len
    if isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool):
        return value  # ints are finite (and a SymInt under torch.compile cannot be inspected)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{fn}: seq_len must be None or a finite number, got seq_len={seq_len!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)  # numpy scalars: Python numbers


def _ntk_exponent(rule: str, dim: int) -> float:
    if dim <= 2:
        raise ValueError(f"{rule}: dim must be > 2 for the NTK exponent dim/(dim-2), got dim={dim}")
    return dim / (dim - 2)


@dataclass(frozen=True)
class Linear:
    """Position interpolation: θ_i' = θ_i / s, i.e. positions are squeezed by s.

    Chen et al. 2023, "Extending context window of large language models via
    positional interpolation" (arXiv 2306.15595); Hugging Face ``rope_type="linear"``.

    >>> Linear(2.0).inv_freq(2, base=10000.0)
    tensor([0.5000], dtype=torch.float64)
    """

    factor: float  # s = L_new / L_train
    attention_factor: ClassVar[float] = 1.0
    uses_seq_len: ClassVar[bool] = False

    def __post_init__(self):
        _check_factor("Linear", self.factor)

    def inv_freq(self, dim: int, *, base: float = 10000.0, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
        dim, base = _check_dim_base("Linear.inv_freq", dim, base, dtype)
        inv_freq = _inv_freq(dim, base, dtype, device)  # (dim/2,)
        return inv_freq / self.factor


@dataclass(frozen=True)
class NTKAware:
    """NTK-aware base change: b' = b · s^{d/(d-2)}, then θ_i = b'^{-2i/d}.

    The lowest frequency is interpolated by exactly s, the highest is kept.
    bloc97, "NTK-Aware Scaled RoPE" (r/LocalLLaMA, 2023); it is Hugging Face's
    dynamic rule frozen at the length L = (2 − 1/s)·L_train (see :class:`DynamicNTK`).

    >>> NTKAware(4.0).inv_freq(4, base=100.0)   # b' = 100 · 4² = 1600
    tensor([1.0000, 0.0250], dtype=torch.float64)
    """

    factor: float  # s
    attention_factor: ClassVar[float] = 1.0
    uses_seq_len: ClassVar[bool] = False

    def __post_init__(self):
        _check_factor("NTKAware", self.factor)

    def inv_freq(self, dim: int, *, base: float = 10000.0, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
        dim, base = _check_dim_base("NTKAware.inv_freq", dim, base, dtype)
        new_base = base * self.factor ** _ntk_exponent("NTKAware", dim)
        return _inv_freq(dim, new_base, dtype, device)


@dataclass(frozen=True)
class DynamicNTK:
    """Dynamic NTK: the NTK base change with a factor that grows with the length L.

    b' = b · (s·L/L_train − (s − 1))^{d/(d−2)} with L = max(seq_len, L_train), so
    nothing changes up to the training length. emozilla, "Dynamically Scaled
    RoPE" (r/LocalLLaMA, 2023); Hugging Face ``rope_type="dynamic"``, where
    ``L_train`` is ``config.max_position_embeddings``. ``seq_len=None`` means L_train.

    >>> rule = DynamicNTK(2.0, original_max_positions=8)
    >>> bool((rule.inv_freq(8, seq_len=8) == rule.inv_freq(8)).all())
    True
    >>> rule.inv_freq(4, base=100.0, seq_len=16)   # b' = 100 · 3² = 900
    tensor([1.0000, 0.0333], dtype=torch.float64)
    """

    factor: float  # s
    original_max_positions: int  # L_train
    attention_factor: ClassVar[float] = 1.0
    uses_seq_len: ClassVar[bool] = True

    def __post_init__(self):
        _check_factor("DynamicNTK", self.factor)
        _check_positive_int("DynamicNTK", self.original_max_positions, "original_max_positions")

    def inv_freq(self, dim: int, *, base: float = 10000.0, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
        dim, base = _check_dim_base("DynamicNTK.inv_freq", dim, base, dtype)
        seq_len = _seq_len("DynamicNTK.inv_freq", seq_len)
        L = self.original_max_positions if seq_len is None else max(seq_len, self.original_max_positions)  # as HF: no int()
        s = self.factor
        new_base = base * ((s * L / self.original_max_positions) - (s - 1)) ** _ntk_exponent("DynamicNTK", dim)
        return _inv_freq(dim, new_base, dtype, device)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


@dataclass(frozen=True)
class YaRN:
    """YaRN: interpolate low frequencies, keep high ones, ramp in between; scale attention.

    With r_i = L_train·θ_i / 2π rotations per training context, pairs with
    r_i > β_fast keep θ_i, pairs with r_i < β_slow get θ_i / s, and a linear ramp
    over pair index in between (boundaries floored/ceiled when ``truncate``). The paper
    writes the ramp γ(r) as linear in the rotation count r_i; this follows the reference
    code and Hugging Face, which ramp linearly in the pair index between the bounds.
    attention_factor = 0.1·ln s + 1 (or the DeepSeek ratio
    mscale(s, mscale)/mscale(s, mscale_all_dim)), unless given. That ratio is only the factor
    on cos and sin; DeepSeek's attention multiplies its softmax scale by mscale(s, mscale_all_dim)²
    besides, outside the rule (for the released V2/V3 configs the ratio is 1 and all of YaRN's
    temperature comes from there). As in Hugging Face
    (``beta_fast or 32``), ``beta_fast``/``beta_slow`` of None or 0 mean the defaults 32/1,
    and ``mscale``/``mscale_all_dim`` of None or 0 mean "not given"; the rule needs base > 1.
    Peng et al. 2023, "YaRN" (arXiv 2309.00071) §3.2–3.4; Hugging Face ``rope_type="yarn"``.

    >>> rule = YaRN(4.0, original_max_positions=4096)
    >>> round(rule.attention_factor, 4)
    1.1386
    >>> rule.inv_freq(128)[[0, -1]]       # the fastest pair is kept, the slowest divided by 4
    tensor([1.0000e+00, 2.8870e-05], dtype=torch.float64)
    """

    factor: float  # s
    original_max_positions: int  # L_train
    beta_fast: float = 32.0  # rotations above which a pair is extrapolated (kept); None or 0: 32
    beta_slow: float = 1.0  # rotations below which a pair is interpolated (θ/s); None or 0: 1
    mscale: float | None = None  # DeepSeek-style numerator of the attention factor
    mscale_all_dim: float | None = None  # DeepSeek-style denominator
    truncate: bool = True  # floor/ceil the ramp boundaries (Hugging Face default)
    attention_factor: float | None = None  # None: derived from factor as above
    uses_seq_len: ClassVar[bool] = False

    def __post_init__(self):
        _check_factor("YaRN", self.factor)
        _check_positive_int("YaRN", self.original_max_positions, "original_max_positions")
        for name, default in (("beta_fast", 32.0), ("beta_slow", 1.0)):
            value = getattr(self, name)
            if value is None or (value == 0 and not isinstance(value, bool)):  # Hugging Face reads `beta or default`
                object.__setattr__(self, name, default)
            _check_positive_number("YaRN", getattr(self, name), name)
        if self.beta_slow > self.beta_fast:
            raise ValueError(f"YaRN: need beta_fast >= beta_slow > 0, got beta_fast={self.beta_fast!r}, beta_slow={self.beta_slow!r}")
        for name in ("mscale", "mscale_all_dim"):
            _check_positive_number("YaRN", getattr(self, name), name, optional=True, zero=True)
        if self.truncate is not None:  # None: no truncation, as in Hugging Face
            _check_bool("YaRN", self.truncate, "truncate")
        _check_positive_number("YaRN", self.attention_factor, "attention_factor", optional=True)
        if self.attention_factor is None:
            s = self.factor
            if self.mscale and self.mscale_all_dim:
                af = float(_yarn_mscale(s, self.mscale) / _yarn_mscale(s, self.mscale_all_dim))
            else:
                af = _yarn_mscale(s)
            object.__setattr__(self, "attention_factor", af)

    def inv_freq(self, dim: int, *, base: float = 10000.0, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
        dim, base = _check_dim_base("YaRN.inv_freq", dim, base, dtype)  # base > 1: the ramp bounds divide by ln base

        def correction_dim(rotations: float) -> float:  # pair index (in units of dim) with this many rotations
            return (dim * math.log(self.original_max_positions / (rotations * 2 * math.pi))) / (2 * math.log(base))

        low, high = correction_dim(self.beta_fast), correction_dim(self.beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)  # dim - 1, not dim/2 - 1: as Hugging Face clamps
        if low == high:
            high += 0.001  # avoid a zero-width ramp

        pos_freqs = base ** (torch.arange(0, dim, 2, device=device).to(dtype) / dim)  # (dim/2,) = 1/θ_i
        inv_freq_extrapolation = 1.0 / pos_freqs
        inv_freq_interpolation = 1.0 / (self.factor * pos_freqs)
        ramp = torch.clamp((torch.arange(dim // 2, dtype=dtype, device=device) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp  # 1: keep θ_i, 0: θ_i / s
        return inv_freq_interpolation * (1 - extrapolation) + inv_freq_extrapolation * extrapolation


@dataclass(frozen=True)
class Llama3:
    """Llama 3.1 scaling: by wavelength λ_i = 2π/θ_i, keep, divide by s, or blend.

    λ_i < L_train/high_freq_factor: keep θ_i; λ_i > L_train/low_freq_factor: θ_i/s;
    in between θ_i' = (1 − g)·θ_i/s + g·θ_i with g = (L_train/λ_i − low)/(high − low).
    Meta, Llama 3.1 reference code (``apply_scaling``, 2024); Hugging Face ``rope_type="llama3"``.

    >>> import ropebook as rb
    >>> inv = Llama3(8.0, original_max_positions=8192).inv_freq(128, base=500000.0)
    >>> plain = rb.rope_frequencies(128, base=500000.0)
    >>> bool(inv[0] == plain[0]), bool(torch.isclose(inv[-1], plain[-1] / 8))
    (True, True)
    """

    factor: float  # s (8 for Llama 3.1)
    original_max_positions: int  # L_train (8192 for Llama 3.1)
    low_freq_factor: float = 1.0  # wavelengths above L_train / low are divided by s
    high_freq_factor: float = 4.0  # wavelengths below L_train / high are kept
    attention_factor: ClassVar[float] = 1.0
    uses_seq_len: ClassVar[bool] = False

    def __post_init__(self):
        _check_factor("Llama3", self.factor)
        _check_positive_int("Llama3", self.original_max_positions, "original_max_positions")
        for name in ("low_freq_factor", "high_freq_factor"):
            _check_positive_number("Llama3", getattr(self, name), name)
        if not self.high_freq_factor > self.low_freq_factor > 0:
            raise ValueError(
                "Llama3: need high_freq_factor > low_freq_factor > 0, got "
                f"low_freq_factor={self.low_freq_factor!r}, high_freq_factor={self.high_freq_factor!r}"
            )

    def inv_freq(self, dim: int, *, base: float = 10000.0, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
        dim, base = _check_dim_base("Llama3.inv_freq", dim, base, dtype)
        inv_freq = _inv_freq(dim, base, dtype, device)  # (dim/2,)
        s, L = self.factor, self.original_max_positions
        low_freq_wavelen, high_freq_wavelen = L / self.low_freq_factor, L / self.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s, inv_freq)
        smooth = (L / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor)
        smoothed = (1 - smooth) * scaled / s + smooth * scaled
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled)


@dataclass(frozen=True)
class LongRoPE:
    """LongRoPE: one searched factor per pair, a short set and a long set.

    θ_i' = θ_i / a_i with a = ``long_factor`` when seq_len > L_train, else
    ``short_factor`` (``seq_len=None`` counts as short). attention_factor =
    sqrt(1 + ln s / ln L_train) with s = ``factor`` or, if not given,
    ``max_positions / original_max_positions`` (1 when s ≤ 1), unless given. One of
    ``max_positions``, ``factor`` and ``attention_factor`` is required: Hugging Face reads s from
    ``config.max_position_embeddings``, outside the rope parameters.
    Ding et al. 2024, "LongRoPE" (arXiv 2402.13753); Phi-3; Hugging Face ``rope_type="longrope"``.

    >>> rule = LongRoPE([1.0, 1.0], [1.0, 4.0], original_max_positions=4096, max_positions=131072)
    >>> rule.inv_freq(4, base=100.0), rule.inv_freq(4, base=100.0, seq_len=5000)
    (tensor([1.0000, 0.1000], dtype=torch.float64), tensor([1.0000, 0.0250], dtype=torch.float64))
    >>> round(rule.attention_factor, 4)
    1.1902
    """

    short_factor: tuple[float, ...]  # a_i used up to L_train (one per pair)
    long_factor: tuple[float, ...]  # a_i used beyond L_train (one per pair)
    original_max_positions: int  # L_train
    max_positions: int | None = None  # extended context; s = max_positions / L_train if factor is None
    factor: float | None = None  # s for the attention factor
    attention_factor: float | None = None  # None: derived as above
    uses_seq_len: ClassVar[bool] = True

    def __post_init__(self):
        for name in ("short_factor", "long_factor"):
            value = getattr(self, name)
            try:  # a tensor iterates as 0-d tensors: read out its numbers first
                entries = list(value.tolist() if isinstance(value, Tensor) else value)
            except TypeError:
                entries = None
            if (entries is None or isinstance(value, (str, bytes))
                    or not all(isinstance(f, numbers.Real) and not isinstance(f, bool) for f in entries)):
                raise ValueError(f"LongRoPE: {name} must be a sequence of numbers, got {name}={value!r}")
            factors = tuple(float(f) for f in entries)
            if not all(f > 0 and math.isfinite(f) for f in factors):
                raise ValueError(f"LongRoPE: {name} entries must be positive and finite, got {name}={factors}")
            object.__setattr__(self, name, factors)
        _check_positive_int("LongRoPE", self.original_max_positions, "original_max_positions")
        if self.max_positions is not None:
            _check_positive_int("LongRoPE", self.max_positions, "max_positions")
        if self.factor is not None:
            _check_factor("LongRoPE", self.factor)
        _check_positive_number("LongRoPE", self.attention_factor, "attention_factor", optional=True)
        if self.max_positions is None and self.factor is None and self.attention_factor is None:
            # Hugging Face derives s from config.max_position_embeddings, which is not among the rope parameters
            # a port copies: without it the factor would come out 1 (Phi-3-mini-128k uses 1.19), silently
            raise ValueError("LongRoPE: pass max_positions (the extended context, Hugging Face's "
                             "config.max_position_embeddings), factor or attention_factor, got none of them: the "
                             "attention factor sqrt(1 + ln s / ln original_max_positions) needs s")
        if self.attention_factor is None:
            s = self.factor
            if s is None:
                s = (self.max_positions or self.original_max_positions) / self.original_max_positions
            if s > 1.0 and self.original_max_positions < 2:  # ln(L_train) = 0 in the denominator
                raise ValueError(
                    "LongRoPE: original_max_positions must be >= 2 to derive attention_factor = "
                    f"sqrt(1 + ln s / ln original_max_positions), got original_max_positions={self.original_max_positions} "
                    f"(s={s}); pass attention_factor"
                )
            af = 1.0 if s <= 1.0 else math.sqrt(1 + math.log(s) / math.log(self.original_max_positions))
            object.__setattr__(self, "attention_factor", af)

    def inv_freq(self, dim: int, *, base: float = 10000.0, seq_len=None, dtype=torch.float64, device=None) -> Tensor:
        dim, base = _check_dim_base("LongRoPE.inv_freq", dim, base, dtype)
        seq_len = _seq_len("LongRoPE.inv_freq", seq_len)
        for name in ("short_factor", "long_factor"):
            if len(getattr(self, name)) != dim // 2:
                n = len(getattr(self, name))
                raise ValueError(f"LongRoPE: {name} must have dim // 2 = {dim // 2} entries, got {n} (dim={dim})")
        long = seq_len is not None and seq_len > self.original_max_positions
        factors = self.long_factor if long else self.short_factor
        ext = torch.tensor(factors, dtype=dtype, device=device)  # (dim/2,)
        exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=device).to(dtype) / dim
        return 1.0 / (ext * base**exponent)


_HF_RULES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")

# model types whose modeling code in transformers rotates pairs (2i, 2i + 1) whatever the config says (their
# rotate_half takes x[..., 0::2] and x[..., 1::2], or they view pairs as complex numbers); a config may also
# ask for it with rope_interleave (DeepSeek-V3 and others). tests/test_hf_oracle.py checks this list against
# the installed transformers' source.
HF_INTERLEAVED_MODEL_TYPES = ("gptj", "codegen", "cohere", "cohere2", "glm", "glm4", "helium", "ernie4_5",
                              "ernie4_5_moe", "deepseek_v2", "llama4", "llama4_text", "moonshine")


def from_hf_config(config, *, layer_type: str | None = None) -> dict:
    """The RoPE of a Hugging Face model config, as keyword arguments for :class:`ropebook.RotaryEmbedding`:
    ``dim``, ``base``, ``scaling``, ``rotary_dim`` and ``layout``.

    A rule of this module does not carry the base (Hugging Face's ``rope_theta``) nor the partial-rotary width:
    porting a model by hand, each is easy to leave at its default without a word (Llama 3.1's base is
    500000, not 10000). This reads them from the config as transformers 5 does: ``rope_parameters`` (with
    ``layer_type`` for a config with one set per layer type, as Gemma 3's); ``head_dim`` (DeepSeek's
    ``qk_rope_head_dim``), else ``hidden_size // num_attention_heads``; the rotated width from
    ``partial_rotary_factor``, or ``rotary_dim`` (GPT-J, CodeGen); ``max_position_embeddings`` where a rule
    needs it (dynamic NTK's training length; YaRN's and LongRoPE's factor when the parameters give none). A
    multimodal config is read through its ``get_text_config()``.

    ``config`` is a transformers config object, or a dict such as a checkpoint's ``config.json``: with a
    ``model_type`` the dict is first built into that model's transformers config, which translates the older
    spellings (``rope_scaling``, GPT-NeoX's ``rotary_emb_base`` and ``rotary_pct``, Phi-3's top-level
    ``original_max_position_embeddings``); without one it is read as above, with ``rope_theta`` and
    ``rope_scaling`` accepted beside ``rope_parameters``.

    The layout is the modeling code's: the half layout for most models (Llama, Mistral, Qwen, GPT-NeoX, Phi),
    the interleaved one for the model types in ``HF_INTERLEAVED_MODEL_TYPES`` and where the config sets
    ``rope_interleave``. A dict without ``model_type`` gets the half layout unless it sets ``rope_interleave``.
    Multimodal RoPE (``mrope_section``) is refused: ropebook does not implement it.

    >>> kw = from_hf_config({"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 131072,
    ...                      "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
    ...                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    ...                                          "original_max_position_embeddings": 8192}})
    >>> kw["dim"], kw["base"], kw["rotary_dim"], kw["layout"], kw["scaling"]
    (128, 500000.0, 128, 'half', Llama3(factor=8.0, original_max_positions=8192, low_freq_factor=1.0, high_freq_factor=4.0))
    >>> import ropebook as rb
    >>> rope = rb.RotaryEmbedding(**kw)      # or rb.apply_rope(x, base=kw["base"], scaling=kw["scaling"], ...)
    """
    fn = "from_hf_config"
    if isinstance(config, dict) and config.get("model_type") is not None:
        try:
            from transformers import AutoConfig
        except ImportError:  # read the dict as it is
            pass
        else:
            fields = {k: v for k, v in config.items() if k != "model_type"}
            try:
                config = AutoConfig.for_model(config["model_type"], **fields)
            except ValueError as err:  # a model type this transformers does not know
                raise ValueError(f"{fn}: transformers cannot build a config of model_type="
                                 f"{config['model_type']!r} ({err}); pass the dict without model_type to read it "
                                 f"as it is") from None
    if not isinstance(config, dict) and hasattr(config, "get_text_config"):
        config = config.get_text_config()  # the language model's config of a multimodal one (itself otherwise)
    get = config.get if isinstance(config, dict) else (lambda name, default=None: getattr(config, name, default))
    where = "config[{!r}]" if isinstance(config, dict) else "config.{}"
    params = get("rope_parameters")
    if params is None:  # transformers 4's spelling, or a dict without model_type: the base and the rule apart
        params = {"rope_theta": get("rope_theta") or get("rotary_emb_base"), **(get("rope_scaling") or {})}
        partial = get("partial_rotary_factor") if get("partial_rotary_factor") is not None else get("rotary_pct")
        if partial is not None:
            params["partial_rotary_factor"] = partial
    if not isinstance(params, dict):
        params = dict(params)
    nested = (any(isinstance(v, dict) for v in params.values())  # {layer type: parameters, or None for no RoPE}
              and all(isinstance(v, dict) or v is None for v in params.values()))
    if nested or layer_type is not None:
        if not nested:
            raise ValueError(f"{fn}: layer_type is for a config with RoPE parameters per layer type, and this one "
                             f"has one set, got layer_type={layer_type!r}")
        if layer_type not in params or params[layer_type] is None:
            raise ValueError(f"{fn}: this config has RoPE parameters per layer type "
                             f"{sorted(k for k, v in params.items() if v is not None)}: pass layer_type= one of them, "
                             f"got layer_type={layer_type!r}")
        params = params[layer_type]
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in _HF_RULES:
        raise ValueError(f"{fn}: rope_type must be one of {_HF_RULES} (what ropebook implements), got rope_type={kind!r}")
    if params.get("mrope_section") is not None or params.get("mrope_interleaved") is not None:
        raise ValueError(f"{fn}: multimodal RoPE (mrope_section={params.get('mrope_section')!r}) splits the pairs "
                         f"between time, height and width positions; ropebook does not implement it")

    def need(name: str, *, in_params: bool = True):
        value = params.get(name) if in_params else get(name)
        if value is None:
            label = f"rope_parameters[{name!r}]" if in_params else where.format(name)
            raise ValueError(f"{fn}: rope_type={kind!r} needs {label}, got none")
        return value

    heads = get("num_attention_heads")
    head_dim = get("qk_rope_head_dim") or get("head_dim") or (
        need("hidden_size", in_params=False) // need("num_attention_heads", in_params=False) if heads else None)
    if head_dim is None:
        raise ValueError(f"{fn}: the head size needs {where.format('head_dim')} or "
                         f"{where.format('hidden_size')} and {where.format('num_attention_heads')}, got none")
    rotary_dim = int(head_dim * (params.get("partial_rotary_factor") or 1.0))  # Hugging Face's int(), as it is
    if get("rotary_dim") is not None:  # GPT-J and CodeGen give the rotated width itself
        rotary_dim = int(get("rotary_dim"))
    base = float(params.get("rope_theta") or get("default_theta") or 10000.0)  # transformers' default, as GPT-J's code
    max_pos = get("max_position_embeddings")

    def original() -> int:  # transformers 5 prefers the config's own (Phi-3), then the rule's, then max_pos
        value = get("original_max_position_embeddings") or params.get("original_max_position_embeddings") or max_pos
        if value is None:
            raise ValueError(f"{fn}: rope_type={kind!r} needs rope_parameters['original_max_position_embeddings'] "
                             f"or {where.format('max_position_embeddings')}, got none")
        return int(value)

    if kind == "default":
        rule = None
    elif kind == "linear":
        rule = Linear(float(need("factor")))
    elif kind == "dynamic":  # Hugging Face's training length here is max_position_embeddings itself
        rule = DynamicNTK(float(need("factor")), need("max_position_embeddings", in_params=False))
    elif kind == "yarn":
        factor = params.get("factor")
        if factor is None:  # DeepSeek-V3: the ratio of the two lengths
            factor = need("max_position_embeddings", in_params=False) / original()
        rule = YaRN(float(factor), original(), beta_fast=params.get("beta_fast") or 32.0,
                    beta_slow=params.get("beta_slow") or 1.0, mscale=params.get("mscale"),
                    mscale_all_dim=params.get("mscale_all_dim"), truncate=params.get("truncate", True),
                    attention_factor=params.get("attention_factor"))
    elif kind == "llama3":
        rule = Llama3(float(need("factor")), original(), low_freq_factor=float(need("low_freq_factor")),
                      high_freq_factor=float(need("high_freq_factor")))
    else:  # longrope: s = factor, else max_position_embeddings / original (Phi-3)
        factor = params.get("factor")
        rule = LongRoPE(need("short_factor"), need("long_factor"), original(), max_positions=max_pos,
                        factor=None if factor is None else float(factor), attention_factor=params.get("attention_factor"))
    interleaved = bool(get("rope_interleave")) or get("model_type") in HF_INTERLEAVED_MODEL_TYPES
    return {"dim": int(head_dim), "base": base, "scaling": rule, "rotary_dim": rotary_dim,
            "layout": "interleaved" if interleaved else "half"}
