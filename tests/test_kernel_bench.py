"""The GPU benchmark (``ropebook.kernels.bench``, run as ``python -m ropebook.bench gpu``), here without a
GPU: each of its rows computes the rotation it claims to time, its loop over contenders hands each the inputs as
they were, and the whole run (cases, SAM's case, the results file, the sweep) goes through on the CPU with the
kernel under the Triton interpreter and only the GPU timers replaced, so that what a GPU session runs has run
before it. On a CUDA machine the same tests run natively, the end-to-end run on the GPU with its timers replaced."""

import argparse
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

import ropebook as rb  # noqa: E402
from kernel_cases import DEVICE, assert_close_dtype, interpret_on_cpu, qk  # noqa: E402
from ropebook import kernels as K  # noqa: E402


@pytest.fixture(autouse=True)
def _interpreter_on_cpu(monkeypatch):
    interpret_on_cpu(monkeypatch)


def test_benchmark_rows_of_cohere_and_deepseek_compute_the_benchmarks_rotation():
    """The GPU benchmark's rows for Cohere's and DeepSeek-V3's drop-ins hand them interleaved copies of q and k, so
    that their results, in the half layout, are the rotation every other row computes: bit for bit the Llama
    drop-in's on the same bf16 cos and sin (the same products, pair by pair). Runs here, without a GPU."""
    from ropebook.kernels.bench import _rows

    q, k = qk(B=2, T=3, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    q_mem, k_mem = q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous()  # (B, T, H, D), as benchmarked
    c, s = (x.to(DEVICE) for x in rb.rope_cos_sin(torch.tensor([[5, 6, 7], [900, 901, 902]]), 16))
    want = K.hf_apply_rotary_pos_emb(q, k, *(torch.cat((x, x), -1).to(torch.bfloat16) for x in (c, s)))
    rows = _rows._other_forms(q_mem, k_mem, c, s)
    assert len(rows) == 2
    for name, (fn, note, outputs) in rows.items():
        fn()
        for got, w in zip(outputs(), want):
            assert torch.equal(got, w), name


def test_benchmark_rows_of_the_vision_function_compute_the_benchmarks_rotation():
    """The GPU benchmark's rows for Qwen2-VL's vision function and its drop-in, on the prefill's one sequence as
    (T, H, D) with float32 cos (T, D): the drop-in gives the Llama drop-in's result on the same (1, H, T, D) views
    and float32 cos bit for bit, and both rows the float64 rotation within one rounding to bf16. Runs here,
    without a GPU."""
    pytest.importorskip("transformers")
    from ropebook.kernels.bench import _rows

    q, k = qk(B=1, T=6, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    q_mem, k_mem = q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous()  # (1, T, H, D), as benchmarked
    c, s = (x.to(DEVICE) for x in rb.rope_cos_sin(torch.tensor([[5, 6, 7, 8, 9, 10]]), 16))  # (1, T, 8)
    llama = K.hf_apply_rotary_pos_emb(q_mem.transpose(1, 2), k_mem.transpose(1, 2), torch.cat((c, c), -1),
                                      torch.cat((s, s), -1))
    rows = _rows._vision_forms(q_mem, k_mem, c, s)
    assert len(rows) == 2
    for name, (fn, note, outputs) in rows.items():
        fn()
        for got, x, w in zip(outputs(), (q, k), llama):
            assert got.shape == x.shape and got.dtype == torch.bfloat16, name
            want = rb.apply_rope(x.double(), offset=5, backend="torch")
            assert_close_dtype(got, want.to(torch.bfloat16))
            if "drop-in" in name:
                assert torch.equal(got, w), name


def test_benchmark_rows_of_sams_function_compute_its_rotation():
    """The GPU benchmark's rows for SAM 2's memory cross-attention (their eager function, the drop-in, and one
    launch for every frame with a tiled table), on a small grid: each gives SAM 2's function run in float64
    within one rounding to bf16, the pointers as they came, and the drop-in and the tiled launch the same bits
    (the same products, pair by pair). Runs here, without a GPU."""
    pytest.importorskip("transformers")
    from ropebook.kernels.bench import _sam

    q, k, cos, sin = _sam.sam_inputs(DEVICE, side=3, D=16, frames=2, pointers=3)
    assert q.shape == (1, 1, 9, 16) and k.shape == (1, 1, 21, 16) and cos.shape == (1, 9, 16) and cos.dtype == torch.float32
    rows = _sam._sam_forms(q, k, cos, sin, 3)
    assert len(rows) == 4 and rows["device copy (same bytes)"][2] is None
    got = {}
    for name, (fn, note, outputs) in rows.items():
        fn()
        if outputs is None:
            continue
        got[name] = outputs()
        assert _sam._sam_error(outputs, q, k, cos, sin, 3) <= _one_rounding(q, k), name
        assert torch.equal(got[name][1][:, :, 18:], k[:, :, 18:]), name
    drop_in, tiled = got["ropebook hf_apply_rotary_pos_emb_2d (drop-in)"], got["ropebook, table tiled, keys in one launch"]
    assert all(torch.equal(a, b) for a, b in zip(drop_in, tiled))


def test_benchmark_sam_case_failing_is_reported_not_fatal(monkeypatch, capsys):
    """The SAM case runs after the main cases are timed, before the file is written: where it fails (here: its
    inputs cannot be made), it says so in its entry and the run goes on."""
    from ropebook.kernels.bench import _sam

    def no_memory(device, *sizes):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(_sam, "sam_inputs", no_memory)
    case = _sam._sam_case()
    assert case["failed"] == "RuntimeError: CUDA out of memory" and "results" not in case
    assert case["case"] == "SAM 2 memory cross-attention" and "timing" in case
    assert "SAM 2 memory cross-attention: failed: RuntimeError: CUDA out of memory" in capsys.readouterr().out


def test_benchmark_timing_loop_restores_inputs_and_reports_failures(monkeypatch, capsys):
    """The benchmark's loop over contenders (shared by its cases; the GPU timers replaced by counters here): every
    contender sees the inputs as they were, in every round, whatever an in-place contender did to them; one that
    fails in its first round is reported with its error and not timed again, and one whose result cannot be read
    is timed and says so; the median of the rounds is the time, and the table gives each the copy's percentage."""
    from ropebook.kernels.bench import _config, _timing

    monkeypatch.setattr(_config, "ROUNDS", 3)
    times = iter(range(1, 100))
    monkeypatch.setattr(_timing, "_time_or_eager", lambda fn, decode: (fn() or next(times) * 1e-3, "graph"))
    monkeypatch.setattr(_timing, "_eager_ms", lambda fn: 0.5)
    x = torch.zeros(4)
    seen = []

    def in_place():
        seen.append(x.sum().item())
        x.add_(1.0)

    def fails():
        raise RuntimeError("no kernel for this shape")

    contenders = {"device copy (same bytes)": (lambda: None, "copy", None), "in place": (in_place, "adds 1", lambda: (in_place(), x)[1:]),
                  "fails": (fails, "raises", None)}
    results = _timing._time_contenders(contenders, (x,), False, lambda outputs: outputs()[0].sum().item())
    assert seen == [0.0] * 4  # (the error measurement's call, then one a round: each from the saved zeros)
    assert results["in place"]["max_abs_err"] == 4.0  # outputs(): a call, then what it left (4 ones)
    assert results["fails"] == dict(us=None, note="failed: RuntimeError: no kernel for this shape")
    assert results["device copy (same bytes)"]["rounds_us"] == [1.0, 3.0, 5.0]  # interleaved rounds
    assert results["in place"]["rounds_us"] == [2.0, 4.0, 6.0] and results["in place"]["us"] == 4.0
    _timing._print_case("a case", results, 4000, False)
    out = capsys.readouterr().out
    assert results["in place"]["pct_of_copy"] == 75.0 and results["in place"]["GBps"] == 1.0
    assert "a case, q+k read+write 0.00 MB" in out and "failed: RuntimeError" in out
    # a row whose result cannot be read (its outputs() raises) is still timed, and its note says why
    results = _timing._time_contenders({"uncompared": (lambda: None, "runs", fails)}, (x,), False,
                                       lambda outputs: outputs()[0].sum().item())
    assert results["uncompared"]["rounds_us"] == pytest.approx([7.0, 8.0, 9.0]) and results["uncompared"]["max_abs_err"] is None
    assert results["uncompared"]["note"] == "runs; error not measured: RuntimeError: no kernel for this shape"


@pytest.mark.skipif(DEVICE == "cuda", reason="what the GPU benchmark does on a machine without one")
def test_gpu_benchmark_without_cuda_says_so_and_checks_the_kernel():
    """``python -m ropebook.bench gpu`` in CI: it prints no GPU time, says plainly that it measured none, and
    runs its CPU-safe parts: the host time of a decoding call up to the launch, labelled as this machine's
    CPU's, and the kernel under the interpreter against rb.apply_rope; without Triton it says that."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "ropebook.bench", "gpu", "--quick"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "GPU numbers were NOT measured" in r.stdout and not re.search(r"\d\s*(us|µs|GB/s)\b", r.stdout), r.stdout
    head, table = r.stdout.split("host µs a decoding call, up to the launch (this machine's CPU: ")
    table = table.split("kernel under TRITON_INTERPRET=1 agrees with rb.apply_rope")[0].splitlines()[2:]
    assert [line.rsplit(None, 2)[0] for line in table] == ["rope_qk, angles=table", "rope_qk, angles=kernel",
                                                           "rope_qk, angles=table, in place", "rope_qk_cos_sin",
                                                           "hf_apply_rotary_pos_emb",
                                                           "torch.ops.ropebook.rope (compiled)"], r.stdout
    assert all(0 < float(x) < 1e5 for line in table for x in line.rsplit(None, 2)[1:]), r.stdout
    assert "kernel under TRITON_INTERPRET=1 agrees with rb.apply_rope" in r.stdout, r.stdout
    code = "import sys; sys.modules['triton'] = None; from ropebook.bench import main; sys.exit(main(['gpu']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "triton is not installed" in r.stdout and "NOT measured" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("source", ["kernel", "table", "quadrant", "cos_sin"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("together", [False, True])
def test_sweep_variants_launch_what_they_name(source, inplace, together):
    """The GPU sweep forces a tile configuration and an angle source: the launch it makes must carry that
    configuration and source, and still rotate correctly (it decides the defaults, so it must time what it says)."""
    from ropebook.kernels import bench, rope_triton

    cache = K.rope_cache(16, max_positions=64, device=DEVICE)
    q, k = qk(B=2, T=1, HQ=4, HK=2, D=16, dtype=torch.bfloat16)
    off = torch.tensor([3, 40], device=DEVICE)
    pos = off[:, None] + torch.arange(1, device=DEVICE)  # (B, T)
    cos, sin = cache.cos[pos], cache.sin[pos]  # (B, T, r/2)
    q0, k0, default_config = q.clone(), k.clone(), rope_triton.default_config
    call = bench._variant(q, k, cache, off, cos, sin, source, (1, 2, 1, together), inplace)
    rope_triton._capture = captured = []
    try:
        call()
    finally:
        rope_triton._capture = None
    ((grid, num_warps, _, consts),) = captured
    c = dict(zip(rope_triton._CONSTEXPRS, consts))
    assert (c["BLOCK_T"], c["BLOCK_H"], num_warps, c["TOGETHER"]) == (1, 2, 1, together)
    assert grid[0] == (2 if together else 2 + 1)  # 4 q heads, 2 a block; and 2 k heads: with q's, or 2 a block
    assert c["ANGLES"] == (0 if source in ("table", "cos_sin") else 1) and c["SINCOS"] == (source == "quadrant")
    assert rope_triton.default_config is default_config and rope_triton.SINCOS == "libdevice"  # both put back
    qr, kr = call()
    assert_close_dtype(qr, rb.apply_rope(q0, offset=off.view(2, 1, 1)))
    assert_close_dtype(kr, rb.apply_rope(k0, offset=off.view(2, 1, 1)))
    assert (qr.data_ptr() == q.data_ptr()) == inplace



# the benchmark's rows by the cos and sin they read: float32 values of float64 angles (or angles the kernel turns
# into cos and sin itself), or Hugging Face's bf16 tables; a new row must be put in one of the two
FLOAT32_TABLES = {"torch.compile(rb torch path)", "ropebook rope_qk, angles=kernel", "ropebook rope_qk, angles=table",
                  "ropebook rope_qk, angles=kernel, in place", "ropebook rope_qk, angles=table, in place",
                  "ropebook rope_qk, angles=kernel, quadrant sin/cos",
                  "ropebook rope_qk, angles=kernel, quadrant sin/cos, in place",
                  "ropebook rope_qk_cos_sin, float32 cos/sin", "HF eager vision formula (Qwen2-VL)",
                  "ropebook hf_apply_rotary_pos_emb_vision (drop-in)",
                  "ropebook rope_qk, angles=table, Triton JIT launch", "flash-attn apply_rotary (2 calls)",
                  "flash-attn apply_rotary (2 calls, in place)"}
BF16_TABLES = {"HF eager formula", "torch.compile(HF formula)", "ropebook rope_qk_cos_sin, HF bf16 cos/sin, in place",
               "ropebook hf_apply_rotary_pos_emb (drop-in)", "ropebook hf_apply_rotary_pos_emb_cohere (drop-in)",
               "ropebook hf_apply_rotary_pos_emb_interleave (drop-in)", "torch.compile(ropebook drop-in)",
               "Liger-Kernel rope (in place)"}
COPY = "device copy (same bytes)"


def _ulp_bf16(x: float) -> float:
    """bf16's unit in the last place at magnitude x (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(x)) - 7)


def _one_rounding(*xs) -> float:
    """The most a rotation of ``xs`` computed in float32 and rounded once to bf16 can be off from the exact one: a
    whole ulp at the largest value a rotation can give, √2·max|x| (a turned pair keeps its norm), since the Triton
    interpreter truncates (a GPU rounds to nearest: half that), plus float32's own error, a few roundings of
    2^-24 relative, well under 2^-12 of an ulp."""
    return _ulp_bf16(math.sqrt(2) * max(x.abs().max().item() for x in xs)) * (1 + 2.0**-12)


def test_gpu_benchmark_runs_end_to_end_on_the_cpu(monkeypatch, tmp_path, capsys):
    """The GPU session's run, here first: ``bench._measure`` (what ``python -m ropebook.bench gpu`` calls on a CUDA
    device) on this machine's device at the benchmark's heads and D but two small cases, SAM's case on a small grid, the results
    file, and the sweep (two tile configurations and the one-program-a-token one, every angle source) with its
    final. The kernel runs under the Triton interpreter and torch.compile for real; the GPU timers are replaced,
    each by a counter that still calls its contender, and the host-time table runs two calls a row. Not rehearsed:
    CUDA-graph capture itself, the L2 flush, the GPU's entry in the file, and the rows of Liger-Kernel and
    flash-attn where they are not installed (here). Every row of every case runs and none fails; every row but
    the copy has its error measured (in-place rows too), within bf16 roundings of the float64 rotation (a wrong
    position or layout is off by the size of q itself); the file and the sweep's rows hold what the chapter and
    ``finalists`` read."""
    from ropebook.kernels import bench, rope_triton
    from ropebook.kernels.bench import _config, _host, _rows, _sam, _sweep, _timing

    cases = [("prefill T=8", 1, 8), ("decode B=2", 2, 1)]
    for name, value in dict(shapes=lambda quick: cases, ROUNDS=2, FINAL_ROUNDS=1, SAM_SIDE=3, SAM_D=16, SAM_FRAMES=2,
                            SAM_POINTERS=3, MAX_OFFSET=4096).items():  # MAX_OFFSET: the table's length (1M rows: 512 MB)
        monkeypatch.setattr(_config, name, value)
    monkeypatch.setattr(_sweep, "_sweep_cases", lambda: cases[::-1])
    configs = _sweep.sweep_configs
    monkeypatch.setattr(_sweep, "sweep_configs", lambda T: configs(T)[:2] + configs(T)[-1:])
    monkeypatch.setattr(_host, "host_to_launch_us", functools.partial(_host.host_to_launch_us, batches=1, calls=2))

    def counter(fn, *args, **kwargs):  # each GPU timer: the call it would time, once, and a made-up duration
        fn()
        return 1e-3

    for timer in ("_time", "_eager_ms", "_host_us"):
        monkeypatch.setattr(_timing, timer, counter)
    sweep_file = tmp_path / "gpu_sweep.json"
    other = dict(case="prefill T=16384", stage="sweep", angles="table", us=9.0)  # a case this run does not sweep
    sweep_file.write_text(json.dumps([other]))
    monkeypatch.setenv("ROPEBOOK_BENCH_JSON", str(tmp_path / "gpu_bench.json"))
    monkeypatch.setenv("ROPEBOOK_BENCH_SWEEP", "1")
    monkeypatch.setenv("ROPEBOOK_SWEEP_JSON", str(sweep_file))

    assert bench._measure(argparse.Namespace(quick=False), DEVICE) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert data["device"].startswith("cpu (") and data["sm_count"] is None if DEVICE == "cpu" else data["sm_count"] > 0
    assert data["kernel_sha256"] == hashlib.sha256(Path(rope_triton.__file__).read_bytes()).hexdigest()
    assert set(data["host_to_launch_us"]) == {"rope_qk, angles=table", "rope_qk, angles=kernel",
                                              "rope_qk, angles=table, in place", "rope_qk_cos_sin",
                                              "hf_apply_rotary_pos_emb", bench.OPERATOR_ROW}
    assert [c["case"] for c in data["cases"]] == ["prefill T=8", "decode B=2"]
    for case, (name, B, T) in zip(data["cases"], cases):
        results = case["results"]
        assert case["bytes"] == bench.moved_bytes(B, T) and f"{name}: B={B} T={T}" in out
        assert {n for n, r in results.items() if r["us"] is None} == set(), {n: r["note"] for n, r in results.items()}
        assert set(results) <= FLOAT32_TABLES | BF16_TABLES | {COPY}, set(results) - FLOAT32_TABLES - BF16_TABLES
        assert ("HF eager vision formula (Qwen2-VL)" in results) == (T > 1)
        assert ("ropebook rope_qk, angles=table, Triton JIT launch" in results) == (T == 1)
        assert [n for n, r in results.items() if r["max_abs_err"] is None] == [COPY]
        q_mem, k_mem, _ = _rows._inputs(B, T, device=DEVICE)  # the case's inputs (the same seed)
        for n, r in results.items():
            # float32 tables: one rounding (_one_rounding). bf16 tables: cos and sin each rounded (relative 2^-9), which
            # moves a value by at most the pair's norm M = √2·max|x| times 2^-9, half an ulp at M; then HF's formula
            # rounds its two products and their sum in bf16 (1.5 ulp), a fused kernel once (1 ulp, truncating): 2 ulp
            bound = _one_rounding(q_mem, k_mem) * (1 if n in FLOAT32_TABLES else 2)
            assert r["max_abs_err"] is None or r["max_abs_err"] <= bound, (name, n, r["max_abs_err"], bound)
            if n != COPY:
                assert r["rounds_us"] == [1.0, 1.0] and r["pct_of_copy"] == 100.0, (name, n)
    sam = data["sam"]
    assert "failed" not in sam and set(sam["results"]) == {COPY, "HF eager apply_rotary_pos_emb_2d (SAM 2)",
                                                          "ropebook hf_apply_rotary_pos_emb_2d (drop-in)",
                                                          "ropebook, table tiled, keys in one launch"}
    q, k, *_ = _sam.sam_inputs(DEVICE, 3, 16, 2, 3)  # the case's inputs (the same seed)
    assert all(r["max_abs_err"] <= _one_rounding(q, k) for n, r in sam["results"].items() if n != COPY), sam["results"]
    swept = json.loads(sweep_file.read_text())
    assert swept[0] == other  # kept as it was, from the run that wrote it
    assert all(r["kernel_sha256"] == data["kernel_sha256"] and r["device"] == data["device"]
               and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["date"]) for r in swept[1:])
    for name, B, T in cases:
        rows = [r for r in swept if r["case"] == name]
        sweep_rows = [r for r in rows if r["stage"] == "sweep"]
        assert len(sweep_rows) == 3 * len(bench.SOURCES) and {r["angles"] for r in sweep_rows} == set(bench.SOURCES)
        finals = [r for r in rows if r["stage"] == "final"]
        assert {r["angles"] for r in finals if r.get("default")} == set(bench.SOURCES)  # users' defaults: always in
        assert {(r["angles"], r["inplace"]) for r in finals if "angles" in r} == {
            (s, i) for s in bench.SOURCES for i in (False, True)}
        liger = ["Liger-Kernel rope (in place)"] if importlib.util.find_spec("liger_kernel") else []
        assert [r["contender"] for r in finals if "contender" in r] == [COPY] + liger
        assert bench.finalists(swept, name)  # what the sweep's reader takes from the file
