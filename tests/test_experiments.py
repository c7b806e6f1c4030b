"""Tests for ropebook.data and the experiment runner (one process, and two processes under torchrun)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ropebook.crope import parameter_count
from ropebook.data import next_token_task, random_windows, stdlib_corpus, validation_windows
from ropebook.experiments.runner import RunConfig, main
from ropebook.model import TinyLM

TINY = ["--steps", "4", "--eval-every", "2", "--val-windows", "8", "--batch-size", "8", "--seq-len", "16",
        "--dim", "16", "--n-layers", "1", "--n-heads", "2", "--max-bytes", "20000", "--warmup", "2", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def test_stdlib_corpus_is_deterministic_and_split():
    a, b = stdlib_corpus(max_bytes=5000), stdlib_corpus(max_bytes=5000)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert (len(a.train), len(a.val)) == (4500, 500)
    assert a.n_files >= 1 and a.python_version.count(".") == 2


def test_windows_are_shifted_targets():
    data = torch.arange(1000) % 251
    x, y = random_windows(data, 4, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 1:], y[:, :-1])
    x1, y1 = validation_windows(data, 5, 10)
    x2, y2 = validation_windows(data, 5, 10)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    with pytest.raises(ValueError, match="seq_len=10 tokens, got len\\(data\\)=5"):
        random_windows(torch.arange(5), 1, 10, generator=torch.Generator())


def test_next_token_task_answers():
    n = 5
    tokens, pos, answer = next_token_task(64, 9, n, generator=torch.Generator().manual_seed(0))
    for t, p, a in zip(tokens, pos, answer):
        assert int(t[p]) in (n, n + 1)
        assert int(a) == int(t[p + 1 + (int(t[p]) - n)])
        assert int((t >= n).sum()) == 1


def _run(tmp_path, name, extra=()):
    out = tmp_path / name
    assert main([*TINY, *extra, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_runner_writes_complete_seeded_results(tmp_path):
    results = _run(tmp_path, "a.json", ["--positions", "rope", "crope", "--seeds", "0", "1"])
    again = _run(tmp_path, "b.json", ["--positions", "rope", "crope", "--seeds", "0", "1"])
    assert results["complete"] and results["seeds"] == [0, 1] and results["environment"]["world_size"] == 1
    assert results["environment"]["device"] == "cpu" and results["environment"]["device_name"]  # which machine ran it
    assert [(r["position"], r["seed"]) for r in results["runs"]] == [("rope", 0), ("crope", 0), ("rope", 1), ("crope", 1)]
    cfg = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()})
    for run, rerun in zip(results["runs"], again["runs"]):
        assert len(run["train_loss"]) == cfg.steps and run["val_steps"] == [2, 4]
        assert run["final_val_loss"] == run["val_loss"][-1] and all(math.isfinite(v) for v in run["train_loss"])
        assert run["train_loss"] == rerun["train_loss"] and run["val_loss"] == rerun["val_loss"]  # seeded
        assert run["parameters"]["total"] == parameter_count(TinyLM(cfg.model_config(run["position"])))
    assert results["runs"][0]["train_loss"] != results["runs"][2]["train_loss"]  # seeds differ
    assert results["command"].startswith("python -m ropebook.experiments compare")


def test_bad_run_config_raises():
    with pytest.raises(ValueError, match="positions must be a non-empty subset"):
        RunConfig(positions=("alibi",))
    with pytest.raises(ValueError, match="steps must be a positive integer, got steps=0"):
        RunConfig(steps=0)


def test_module_entry_point_rejects_unknown_experiment(capsys):
    from ropebook.experiments.__main__ import _main

    assert _main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert "must be one of: compare" in err and "got nonsense" in err


def test_torchrun_two_cpu_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun is not None, "torchrun is installed with torch"
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "ropebook.experiments", "compare",
           *TINY, "--positions", "none", "crope", "--seeds", "0", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["environment"]["world_size"] == 2 and results["environment"]["backend"] == "gloo"
    assert results["complete"] and [r["position"] for r in results["runs"]] == ["none", "crope"]
    for run in results["runs"]:
        assert len(run["train_loss"]) == 4 and all(math.isfinite(v) for v in run["train_loss"])
        assert run["final_val_loss"] < math.log(256) + 0.5


@pytest.mark.parametrize("name", ["crope_comparison.json", "crope_comparison_gpu.json"])
def test_committed_results_match_the_code(name):
    """The chapter plots committed results: they must be complete and describe the models this code builds."""
    results = json.loads((ROOT / "book" / "data" / name).read_text())
    assert results["complete"] and len(results["seeds"]) >= 3
    cfg = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()})
    assert len(results["runs"]) == len(cfg.positions) * len(cfg.seeds)
    with torch.device("meta"):
        counts = {p: parameter_count(TinyLM(cfg.model_config(p))) for p in cfg.positions}
    for run in results["runs"]:
        assert run["parameters"]["total"] == counts[run["position"]]
        assert len(run["train_loss"]) == cfg.steps and run["final_val_loss"] == run["val_loss"][-1]


def test_stdlib_corpus_is_the_sorted_files_train_then_validation():
    """Train, then validation, is the sorted top-level *.py files' bytes in order: validation is the last 10 %."""
    corpus = stdlib_corpus(max_bytes=50_000)
    files = sorted(Path(corpus.source).glob("*.py"))[: corpus.n_files]
    text = b"".join(f.read_bytes() for f in files)[:50_000]
    assert torch.cat((corpus.train, corpus.val)).numpy().tobytes() == text
    assert len(corpus.val) == round(0.1 * len(text))


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(offset=32), r"offset must be an integer in 0 … seq_len − 1 = 31, got offset=32"),  # wrote NaN accuracies, exit 0
    (dict(steps=0), r"steps must be a positive integer, got steps=0"),  # UnboundLocalError: 'loss'
    (dict(eval_batches=0), r"eval_batches must be a positive integer"),  # ZeroDivisionError
    (dict(heads=3), r"dim / heads must be an even integer .* got dim=64, heads=3"),  # blamed Rotation: head_dim=21
])
def test_lrpe_recall_config_refuses_what_would_fail_or_write_nan(kwargs, pattern):
    from ropebook.experiments import lrpe_recall

    with pytest.raises(ValueError, match=pattern):
        lrpe_recall.TaskConfig(**kwargs)


def test_lrpe_recall_copies_the_current_token_at_offset_zero():
    from ropebook.experiments import lrpe_recall

    assert lrpe_recall.TaskConfig(offset=0).offset == 0  # a trivial task, but a task


def test_lrpe_recall_command_refuses_before_training_and_makes_its_folder(tmp_path, monkeypatch):
    from ropebook.experiments import lrpe_recall

    out = tmp_path / "new" / "copy.json"
    with pytest.raises(ValueError, match=r"offset must be an integer in 0 … seq_len − 1"):
        lrpe_recall.main(["--offsets", "1", "32", "--steps", "1", "--out", str(out)])
    assert not out.parent.exists()  # refused before anything: no folder, no training
    monkeypatch.setattr(lrpe_recall, "run", lambda cfg, encodings, seeds: {"config": {"offset": cfg.offset}})
    assert lrpe_recall.main(["--offsets", "1", "--steps", "1", "--seeds", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["by_offset"]["1"]["config"]["offset"] == 1  # the missing folder was made


def test_offset_model_checks_its_inputs():
    """A (1,) marker_pos broadcast over the batch and a negative one wrapped round, silently; offset_accuracy scored
    a model on another task's tokens (0.46 for a 6-token model asked about 3)."""
    from ropebook.experiments import offset_task

    model = offset_task.OffsetModel(4, 16)
    tokens = torch.zeros(2, 6, dtype=torch.long)
    for marker_pos, pattern in ((torch.tensor([0]), r"marker_pos must be int64 or int32 of shape \(B,\)=\(2,\)"),
                                (torch.tensor([0, -1]), r"marker_pos must hold positions in \[0, T=6\), got values in \[-1, 0\]"),
                                (torch.tensor([0, 6]), r"marker_pos must hold positions in \[0, T=6\)")):
        for call in (model, model.marker_attention):
            with pytest.raises(ValueError, match=pattern):
                call(tokens, marker_pos)
    with pytest.raises(ValueError, match=r"tokens must hold token ids in \[0, n_content \+ 2=6\), got values in \[0, 6\]"):
        model(torch.tensor([[0, 6]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"offset_accuracy: n_content must be the model's, 6, got n_content=3"):
        offset_task.offset_accuracy(offset_task.constructed_offset_model(6), n_content=3, seq_len=16, seed=0)
    with pytest.raises(ValueError, match=r"OffsetModel: n_content must be a positive integer"):
        offset_task.OffsetModel(0, 16)
    for bad in (torch.tensor([True, False]), torch.tensor([0, 1], dtype=torch.uint8)):  # an index of these is a mask
        with pytest.raises(ValueError, match=r"marker_pos must be int64 or int32 of shape \(B,\)=\(2,\)"):
            model(tokens, bad)
    with pytest.raises(ValueError, match=r"tokens must be int64 or int32 of shape \(B, T\)"):
        model(tokens.to(torch.uint8), torch.tensor([0, 1]))
    assert model(tokens, torch.tensor([0, 5])).shape == (2, 4)


@pytest.mark.parametrize("kwargs, name", [(dict(seeds=(0, 0)), "seeds"), (dict(positions=("rope", "rope")), "positions")])
def test_compare_refuses_repeated_runs(kwargs, name):
    """`compare --seeds 0 0` ran twice and the summary took the copies as independent seeds (std over equal runs)."""
    from ropebook.experiments.runner import RunConfig

    with pytest.raises(ValueError, match=rf"RunConfig: {name} must not repeat, got {name}="):
        RunConfig(**kwargs)


def test_configs_take_numpy_integers_and_write_python_ones():
    """ModelConfig(dim=np.int64(32)) was refused although the rest of the package takes numpy integers; taken
    as they are, they would break the JSON the runner writes."""
    import numpy as np

    from ropebook.model import ModelConfig

    cfg = ModelConfig(dim=np.int64(32), n_heads=np.int32(2))
    assert type(cfg.dim) is int and type(cfg.n_heads) is int
    json.dumps(cfg.to_dict())
    run = RunConfig(steps=np.int64(3), batch_size=np.int64(2))
    assert type(run.steps) is int and type(run.batch_size) is int


# ----------------------------------------------------------------------------- token ids of the book's models


def _token_models():
    """(label as the messages name it, argument name, what bounds the ids, call(tokens), vocabulary, longest T)
    for each model of the book that takes token ids: TinyLM, OffsetModel (forward, marker_attention), CopyModel."""
    from ropebook.experiments import lrpe_recall, offset_task
    from ropebook.model import ModelConfig

    torch.manual_seed(0)
    tiny = TinyLM(ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2, max_seq_len=8, position="learned")).eval()
    offset = offset_task.OffsetModel(4, 16).eval()  # vocabulary: 4 content tokens, NEXT and NEXT2
    copy = lrpe_recall.CopyModel(lrpe_recall.TaskConfig(vocab=10, dim=16, heads=2, seq_len=8), "rope").eval()

    def marker(tokens):  # a valid marker_pos for the tokens, whatever they are
        return torch.zeros(len(tokens) if isinstance(tokens, torch.Tensor) and tokens.ndim else 1, dtype=torch.long)

    return {
        "TinyLM": ("TinyLM", "idx", "vocab_size=10", lambda t: tiny(t)[0], 10, 8),
        "OffsetModel.forward": ("OffsetModel.forward", "tokens", "n_content + 2=6", lambda t: offset(t, marker(t)), 6, None),
        "OffsetModel.marker_attention": ("OffsetModel.marker_attention", "tokens", "n_content + 2=6",
                                         lambda t: offset.marker_attention(t, marker(t)), 6, None),
        "CopyModel": ("CopyModel", "tokens", "vocab=10", copy, 10, None),
    }


BAD_TOKENS = [  # (id, tokens given the vocabulary V, words of the message beyond "<label>: <name>")
    ("float", lambda V: torch.zeros(2, 4), ("must be int64 or int32 of shape (B, T)", ".dtype=torch.float32")),
    ("float64 of integers", lambda V: torch.ones(2, 4, dtype=torch.float64), (".dtype=torch.float64",)),
    ("bool", lambda V: torch.ones(2, 4, dtype=torch.bool), (".dtype=torch.bool",)),  # would index as a mask
    ("uint8", lambda V: torch.zeros(2, 4, dtype=torch.uint8), (".dtype=torch.uint8",)),
    ("1-d", lambda V: torch.zeros(4, dtype=torch.long), (".shape=(4,)",)),
    ("3-d", lambda V: torch.zeros(1, 2, 4, dtype=torch.long), (".shape=(1, 2, 4)",)),
    ("list", lambda V: [[0, 1, 2]], ("=list",)),
    ("id = vocabulary", lambda V: torch.tensor([[0, 1], [V, 2]]), ("must hold token ids in [0, ", "got values in [0, {V}]",
                                                                    ".shape=(2, 2)")),
    ("far out of range", lambda V: torch.tensor([[3, 10**6]]), ("got values in [3, 1000000]",)),
    ("negative", lambda V: torch.tensor([[0, -1]]), ("got values in [-1, 0]",)),
    ("int32 out of range", lambda V: torch.tensor([[V + 1]], dtype=torch.int32), ("got values in [{V1}, {V1}]",)),
]


@pytest.mark.parametrize("case", [c[0] for c in BAD_TOKENS])
@pytest.mark.parametrize("which", ["TinyLM", "OffsetModel.forward", "OffsetModel.marker_attention", "CopyModel"])
def test_models_refuse_bad_token_ids_by_name(which, case):
    """nn.Embedding took a float, bool or uint8 tensor to a raw error (or a mask) and an id out of range to
    "index out of range in self" (a device-side assert on a GPU); CopyModel checked nothing. Each model now names
    the argument, what it expected (the bound: vocab_size, n_content + 2, vocab) and what it got."""
    label, name, bound, fn, V, _ = _token_models()[which]
    _, make, words = next(c for c in BAD_TOKENS if c[0] == case)
    with pytest.raises(ValueError) as err:
        fn(make(V))
    message = str(err.value)
    assert message.startswith(f"{label}: {name} ") or message.startswith(f"{label}: {name}."), message
    for word in words:
        assert word.format(V=V, V1=V + 1) in message, message
    if "got values" in message:  # the bound, by name
        assert f"[0, {bound})" in message, message


@pytest.mark.parametrize("which", ["TinyLM", "OffsetModel.forward", "OffsetModel.marker_attention", "CopyModel"])
def test_models_take_int64_and_int32_ids_up_to_the_last_one(which):
    """The checks let every valid id through (0 and V − 1, T up to the model's limit) in int64 and int32 alike."""
    _, _, _, fn, V, max_len = _token_models()[which]
    T = max_len or 7
    tokens = torch.arange(2 * T).reshape(2, T) % V
    tokens[0, 0], tokens[1, -1] = 0, V - 1
    with torch.no_grad():
        torch.testing.assert_close(fn(tokens.int()), fn(tokens))


def test_tinylm_refuses_sequences_longer_than_its_tables_in_every_scheme():
    """The learned and sinusoidal tables have max_seq_len rows; every scheme refuses longer idx alike, by name."""
    from ropebook.model import POSITIONS, ModelConfig

    for position in POSITIONS:
        lm = TinyLM(ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2, max_seq_len=8, position=position))
        assert lm(torch.zeros(1, 8, dtype=torch.long))[0].shape == (1, 8, 10)
        with pytest.raises(ValueError, match=r"TinyLM: the sequence length T of idx must be at most max_seq_len=8, "
                                             r"got idx.shape=\(1, 9\)"):
            lm(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("targets, pattern", [
    (torch.full((8,), 10), r"TinyLM: targets must hold token ids in \[0, vocab_size=10\), got values in \[10, 10\] "
                           r"\(targets.shape=\(8,\)\)"),  # the flat form (B·T,) is named as given
    (torch.zeros(2, 4, dtype=torch.bool), r"TinyLM: targets must be int64 or uint8 .*targets.dtype=torch.bool"),
    (torch.zeros(2, 5, dtype=torch.long), r"TinyLM: targets must have the shape of idx \(2, 4\), got targets.shape=\(2, 5\)"),
])
def test_tinylm_targets_are_checked_like_idx(targets, pattern):
    from ropebook.model import ModelConfig

    model = TinyLM(ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2, max_seq_len=8))
    with pytest.raises(ValueError, match=pattern):
        model(torch.zeros(2, 4, dtype=torch.long), targets)
    assert torch.isfinite(model(torch.zeros(2, 4, dtype=torch.long), torch.full((8,), 9, dtype=torch.uint8))[1])


def test_copy_model_takes_empty_batches_and_checks_its_config():
    """No tokens failed inside linear_attention ("chunk_size must be a positive integer, got chunk_size=0") and
    in a reshape; a dict for the config failed with an AttributeError."""
    from ropebook.experiments import lrpe_recall

    model = lrpe_recall.CopyModel(lrpe_recall.TaskConfig(vocab=10, dim=16, heads=2, seq_len=8), "permutation")
    for shape in ((2, 0), (0, 5), (0, 0)):
        assert model(torch.zeros(shape, dtype=torch.long)).shape == (*shape, 10)
    with pytest.raises(ValueError, match=r"CopyModel: cfg must be a TaskConfig, got type\(cfg\)=dict"):
        lrpe_recall.CopyModel({"vocab": 10}, "rope")


def test_token_range_check_is_skipped_while_compiling(monkeypatch):
    """The range check reads the device (a min and a max); under torch.compile it must not run. The dtype and shape
    checks, which read no values, still do."""
    from ropebook import _validate

    too_big = torch.tensor([[0, 99]])
    with pytest.raises(ValueError, match=r"f: t must hold token ids in \[0, vocab_size=4\), got values in \[0, 99\]"):
        _validate._check_tokens("f", "t", too_big, 4)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    _validate._check_tokens("f", "t", too_big, 4)  # not read
    with pytest.raises(ValueError, match=r"f: t must be int64 or int32 of shape \(B, T\) \(token ids\), got t.shape=\(2,\)"):
        _validate._check_tokens("f", "t", torch.zeros(2, dtype=torch.long), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_out_of_range_ids_on_a_gpu_are_refused_before_the_embedding():
    """On a GPU nn.Embedding would fail with a device-side assert (and spoil the CUDA context): the check reads the
    device once and raises first."""
    from ropebook.model import ModelConfig

    model = TinyLM(ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2, max_seq_len=8)).cuda()
    with pytest.raises(ValueError, match=r"TinyLM: idx must hold token ids in \[0, vocab_size=10\), got values in \[0, 10\]"):
        model(torch.tensor([[0, 10]], device="cuda"))
    assert model(torch.tensor([[0, 9]], device="cuda"))[0].shape == (1, 2, 10)


@pytest.mark.parametrize("call, pattern", [
    (lambda O: O.constructed_offset_model(4, sharpness=math.nan), r"constructed_offset_model: sharpness must be a positive "
                                                                   r"finite number, got sharpness=nan"),
    (lambda O: O.constructed_offset_model(4, gain=-1.0), r"constructed_offset_model: gain must be .*got gain=-1.0"),
    (lambda O: O.constructed_offset_model(4, base=1.0), r"constructed_offset_model: base must be a finite number > 1, got base=1.0"),
    (lambda O: O.constructed_offset_model(0), r"constructed_offset_model: n_content must be a positive integer, got n_content=0"),
    (lambda O: O.offset_accuracy("model", n_content=4, seq_len=8, seed=0),
     r"offset_accuracy: model must be an OffsetModel, got type\(model\)=str"),
    (lambda O: O.offset_accuracy(O.OffsetModel(4, 16), n_content=4, seq_len=8, seed=0.5),
     r"offset_accuracy: seed must be an integer, got seed=0.5"),
    (lambda O: O.offset_accuracy(O.OffsetModel(4, 16), n_content=4, seq_len=8, seed=0, n=0),
     r"offset_accuracy: n must be a positive integer, got n=0"),
    (lambda O: O.train_offset_model(O.OffsetModel(4, 16), lr=math.nan), r"train_offset_model: lr must be a positive finite "
                                                                         r"number, got lr=nan"),
    (lambda O: O.train_offset_model(O.OffsetModel(4, 16), steps=0), r"train_offset_model: steps must be a positive integer, "
                                                                     r"got steps=0"),
    (lambda O: O.train_offset_model(O.OffsetModel(4, 16), seed="0"), r"train_offset_model: seed must be an integer, got seed='0'"),
])
def test_offset_task_functions_name_bad_arguments(call, pattern):
    """A NaN sharpness or lr gave NaN weights or losses silently; a float seed, n=0 or a str model failed with raw
    errors (TypeError from manual_seed, next_token_task's name for n, AttributeError)."""
    from ropebook.experiments import offset_task

    with pytest.raises(ValueError, match=pattern):
        call(offset_task)


def test_offset_task_functions_take_numpy_integers():
    import numpy as np

    from ropebook.experiments import offset_task

    model = offset_task.constructed_offset_model(np.int64(4))
    assert offset_task.offset_accuracy(model, n_content=4, seq_len=np.int64(12), seed=np.int64(0), n=np.int64(64)) == 1.0
    assert len(offset_task.train_offset_model(offset_task.OffsetModel(np.int64(4), 16), steps=np.int64(2),
                                              seed=np.int64(1))) == 2
