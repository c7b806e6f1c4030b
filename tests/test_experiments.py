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
                                (torch.tensor([0, -1]), r"marker_pos must lie in \[0, T = 6\), got values in \[-1, 0\]"),
                                (torch.tensor([0, 6]), r"marker_pos must lie in \[0, T = 6\)")):
        for call in (model, model.marker_attention):
            with pytest.raises(ValueError, match=pattern):
                call(tokens, marker_pos)
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, n_content \+ 2 = 6\), got values in \[0, 6\]"):
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
