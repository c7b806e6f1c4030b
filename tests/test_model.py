"""Tests for ropebook.model: the five position schemes of TinyLM."""

from __future__ import annotations

import math

import pytest
import torch

from ropebook.crope import parameter_count
from ropebook.model import POSITIONS, ModelConfig, TinyLM
from ropebook.positions import sinusoidal_encoding

SMALL = dict(dim=32, n_layers=2, n_heads=2, max_seq_len=16)


def _model(position, **kw):
    torch.manual_seed(0)
    return TinyLM(ModelConfig(position=position, **{**SMALL, **kw})).eval()


@pytest.mark.parametrize("position", POSITIONS)
def test_shapes_and_initial_loss_is_near_uniform(position):
    model = _model(position)
    idx = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 256)
    assert abs(loss.item() - math.log(256)) < 0.1  # tied, small-init embeddings: logits ≈ 0
    assert model(idx)[1] is None


@pytest.mark.parametrize("position", POSITIONS)
def test_causal(position):
    model = _model(position)
    idx = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(2))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 256
    torch.testing.assert_close(model(idx)[0][:, :8], model(changed)[0][:, :8])
    assert not torch.allclose(model(idx)[0][:, 8:], model(changed)[0][:, 8:])


@pytest.mark.parametrize("position", POSITIONS)
def test_only_none_is_blind_to_the_order_of_the_prefix(position):
    """Without positions, one layer's output at the last token depends on the *set* of earlier tokens.

    (With two layers the earlier tokens' own states depend on their prefixes, so one layer is the clean case.)
    """
    model = _model(position, n_layers=1)
    idx = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(3))
    shuffled = torch.cat((idx[:, :-1].flip(-1), idx[:, -1:]), dim=-1)
    same = torch.allclose(model(idx)[0][:, -1], model(shuffled)[0][:, -1], atol=1e-5)
    assert same == (position == "none")


def test_parameter_differences_follow_from_the_schemes():
    counts = {p: parameter_count(_model(p)) for p in POSITIONS}
    D, L = SMALL["dim"], SMALL["n_layers"]
    assert counts["none"] == counts["sinusoidal"] == counts["rope"]
    assert counts["learned"] - counts["none"] == SMALL["max_seq_len"] * D
    assert counts["rope"] - counts["crope"] == L * 3 * D * D // 2


def test_sinusoidal_scheme_adds_the_shared_encoding():
    """The sinusoidal scheme reuses ropebook.positions (ch-why-position), scaled to the embeddings' RMS."""
    model = _model("sinusoidal")
    torch.testing.assert_close(model.pos_table, sinusoidal_encoding(SMALL["max_seq_len"], SMALL["dim"]))
    idx = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(4))
    blind = _model("none")
    blind.load_state_dict(model.state_dict())  # same weights, no table
    assert not torch.allclose(model(idx)[0], blind(idx)[0])


def test_sinusoidal_table_is_added_at_the_scale_of_the_token_embeddings():
    """The table's sin and cos of one angle have sin² + cos² = 1, so its entries have RMS 1/√2; TinyLM scales it
    by 0.02·√2 to the RMS of the token embeddings at initialisation (std 0.02), which ch-crope's comparison
    relies on ("added at the scale of the token embeddings")."""
    model = _model("sinusoidal")
    blind = _model("none")
    blind.load_state_dict(model.state_dict())  # same weights, no table
    seen = {}
    for name, m in (("with", model), ("without", blind)):
        m.blocks[0].register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0]))
    idx = torch.randint(0, 256, (2, SMALL["max_seq_len"]), generator=torch.Generator().manual_seed(5))
    model(idx), blind(idx)
    added = seen["with"] - seen["without"]  # (B, T, D): the scaled table, in every row
    init_std = 0.02  # nn.init.normal_(embed.weight, std=0.02)
    assert math.isclose(added.pow(2).mean().sqrt().item(), init_std, rel_tol=1e-5)
    n = model.embed.weight.numel()  # its RMS is init_std up to sampling error, ~1/√(2n) relative
    assert abs(model.embed.weight.pow(2).mean().sqrt().item() / init_std - 1) < 5 / math.sqrt(2 * n)


BAD_CONFIGS = [
    (dict(position="alibi"), "position must be one of"),
    (dict(dim=30, n_heads=4), "dim / n_heads must be an even integer, got dim=30, n_heads=4"),
    (dict(n_layers=0), "n_layers must be a positive integer, got n_layers=0"),
]


@pytest.mark.parametrize("kw, message", BAD_CONFIGS)
def test_bad_config_raises_with_names_and_values(kw, message):
    with pytest.raises(ValueError) as err:
        ModelConfig(**kw)
    assert message in str(err.value)


def test_too_long_sequence_raises():
    with pytest.raises(ValueError, match=r"max_seq_len=16, got idx.shape=\(1, 17\)"):
        _model("rope")(torch.zeros(1, 17, dtype=torch.long))


def test_empty_input_and_out_of_range_targets_are_refused():
    """No tokens gave a NaN loss; a target of 16 (vocab 16) failed inside cross_entropy, and −100 was read as
    cross_entropy's "ignore" and gave a NaN loss when every target was −100."""
    m = TinyLM(ModelConfig(vocab_size=16, dim=32, n_layers=1, n_heads=2, max_seq_len=8))
    idx = torch.zeros(2, 4, dtype=torch.long)
    for empty in (torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"with targets, idx must hold at least one sequence of at least one token"):
            m(empty, empty)
    for value in (16, -1, -100):
        with pytest.raises(ValueError, match=rf"targets must hold token ids in \[0, vocab_size=16\), got values in \[{value}, {value}\]"):
            m(idx, torch.full((2, 4), value))
    assert torch.isfinite(m(idx, torch.full((2, 4), 15))[1])
    # logits alone of no windows are fine: a process of a distributed validation can be handed none
    assert m(torch.zeros(0, 4, dtype=torch.long))[0].shape == (0, 4, 16)


def test_data_edge_cases():
    """validation_windows indexed past the end beyond 2^24 tokens (float32 linspace rounds up); stdlib_corpus
    could return an empty training split."""
    import numpy as np

    from ropebook.data import stdlib_corpus, validation_windows

    x, y = validation_windows(torch.zeros(2**25, dtype=torch.uint8), 3, 4)
    assert x.shape == y.shape == (3, 4)
    assert validation_windows(torch.arange(100), 3, 4)[0][:, 0].tolist() == [0, 47, 95]  # the windows runs used
    corpus = stdlib_corpus(max_bytes=3, val_fraction=0.9)
    assert len(corpus.train) >= 1 and len(corpus.val) >= 1 and len(corpus.train) + len(corpus.val) == 3
    assert len(stdlib_corpus(max_bytes=np.int64(1000)).val) == 100
