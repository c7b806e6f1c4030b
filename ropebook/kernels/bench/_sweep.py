"""The sweep that decides the kernel's defaults: every tile configuration and angle source in one round, then the
finalists against Liger-Kernel and a copy in interleaved rounds."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics

import torch

from . import _config, _rows, _timing
from ._config import HK, HQ, SOURCES


def default_of(source: str, T: int) -> tuple[int, int, int, bool]:
    """The configuration ``rope_triton.default_config`` gives a source at T tokens (our head counts), as
    (BLOCK_T, BLOCK_H, num_warps, together)."""
    from ropebook.kernels import rope_triton

    return (*rope_triton.default_config(T, max(HQ, HK), source in ("table", "cos_sin"))[:3], False)


def sweep_configs(T: int) -> list[tuple[int, int, int, bool]]:
    """The (BLOCK_T, BLOCK_H, num_warps, together) the sweep times at T tokens a sequence: programs of one
    tensor's heads (4 to 32 of them), and programs of q's heads with k's share (``together``; BLOCK_H = 32
    is one program a token, Liger-Kernel's layout).

    >>> len(sweep_configs(1)), len(sweep_configs(1024)), sweep_configs(1)[-1]
    (18, 36, (1, 32, 8, True))
    """
    out = []
    for bt in ([1] if T == 1 else [1, 2]):
        out += [(bt, bh, w, False) for bh in (4, 8, 16, 32) for w in ((1, 2, 4) if T == 1 else (2, 4, 8))]
        out += [(bt, bh, w, True) for bh in (8, 32) for w in (2, 4, 8)]
    return out


def _sweep_cases() -> list[tuple[str, int, int]]:
    """The cases the sweep runs: every case but prefill T=4096, or those that ``$ROPEBOOK_SWEEP_CASES``
    names (comma-separated parts of a case's name, say ``decode,T=1024``), so a run can fit a time limit."""
    cases = [c for c in _config.shapes(False) if c[2] != 4096]
    wanted = [w.strip() for w in os.environ.get("ROPEBOOK_SWEEP_CASES", "").split(",") if w.strip()]
    return [c for c in cases if not wanted or any(w in c[0] for w in wanted)]


def finalists(rows: list[dict], case: str, n: int = 5) -> list[tuple[str, tuple[int, int, int, bool]]]:
    """(source, (BLOCK_T, BLOCK_H, num_warps, together)) worth timing again: the n fastest of the single-round sweep of
    ``case``, then each source's default configuration (it is what users get, so it is always in the final).

    >>> rows = [dict(case="prefill T=1024", angles=a, BLOCK_T=1, BLOCK_H=h, num_warps=2, together=False, us=u)
    ...         for a, h, u in (("table", 8, 3.0), ("table", 16, 1.0), ("kernel", 8, 2.0))]
    >>> finalists(rows, "prefill T=1024", n=1)   # the fastest, then the table's and the kernel's defaults
    [('table', (1, 16, 2, False)), ('table', (1, 8, 4, False)), ('kernel', (1, 8, 2, False))]
    """
    mine = sorted((r for r in rows if r["case"] == case and r.get("stage", "sweep") == "sweep"), key=lambda r: r["us"])
    if not mine:
        raise ValueError(f"finalists: no sweep rows for case={case!r}")
    out = [(r["angles"], (r["BLOCK_T"], r["BLOCK_H"], r["num_warps"], r.get("together", False))) for r in mine[:n]]
    T = 1 if case.startswith("decode") else int(case.split("=")[1])
    for source in dict.fromkeys(r["angles"] for r in mine):
        if (source, default_of(source, T)) not in out:
            out.append((source, default_of(source, T)))
    return out


def _variant(q, k, cache, off, cos, sin, source: str, cfg, inplace: bool = False):
    """A zero-argument call of the kernel with one angle source and tile configuration forced."""
    from ropebook import kernels as K
    from ropebook.kernels import rope_triton

    fixed = lambda T, H, table: cfg  # noqa: E731  (one function for every call: part of the launch signature)

    def call():
        orig = rope_triton.default_config
        rope_triton.default_config = fixed
        try:
            with rope_triton.sincos("quadrant") if source == "quadrant" else contextlib.nullcontext():
                if source == "cos_sin":
                    return K.rope_qk_cos_sin(q, k, cos, sin, inplace=inplace)
                return K.rope_qk(q, k, cache, offsets=off, angles="table" if source == "table" else "kernel",
                                 inplace=inplace)
        finally:
            rope_triton.default_config = orig

    return call


def sweep(tables, device="cuda") -> list[dict]:
    """Time the kernel over ``sweep_configs`` (BLOCK_T, BLOCK_H, num_warps, together) and the angle ``SOURCES`` in one
    round, then time the finalists (out of place and in place) against Liger-Kernel and a copy in
    ``FINAL_ROUNDS`` interleaved rounds: the run that decides a default (rows with ``stage="final"``)."""
    rows = []
    cache, cos_t, sin_t = tables
    for name, B, T in _sweep_cases():
        q_mem, k_mem, offsets = _rows._inputs(B, T, device=device)
        q, k = q_mem.transpose(1, 2), k_mem.transpose(1, 2)
        off = offsets if T == 1 else 0
        pos = offsets[:, None].long() + torch.arange(T, device=device)  # (B, T)
        cos, sin = cos_t[pos], sin_t[pos]  # (B, T, D/2) float32, as rope_qk_cos_sin takes them
        for cfg in sweep_configs(T):
            for source in SOURCES:
                ms = _timing._time(_variant(q, k, cache, off, cos, sin, source, cfg), T == 1, rep=60)
                rows.append(dict(case=name, stage="sweep", BLOCK_T=cfg[0], BLOCK_H=cfg[1], num_warps=cfg[2],
                                 together=cfg[3], angles=source, us=ms * 1e3))
        best = sorted((r for r in rows if r["case"] == name), key=lambda r: r["us"])[:6]
        for r in best:
            print(f"sweep {name:>16} BT={r['BLOCK_T']:>2} BH={r['BLOCK_H']} w={r['num_warps']}"
                  f"{' together' if r['together'] else ''} {r['angles']:>8}: {r['us']:8.2f} us")
        rows += _final(name, T, q_mem, k_mem, q, k, cache, off, cos, sin, finalists(rows, name))
    return rows


def _final(name, T, q_mem, k_mem, q, k, cache, off, cos, sin, chosen) -> list[dict]:
    """Time the chosen variants, out of place and in place, against Liger-Kernel (in place, HF's bf16
    cos/sin) and a device copy of the same bytes, every contender once per round; print medians and ranges."""
    contenders = {}
    src = torch.empty(q_mem.numel() + k_mem.numel(), device=q_mem.device, dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    contenders["device copy (same bytes)"] = (dict(contender="device copy (same bytes)"), lambda: dst.copy_(src))
    if importlib.util.find_spec("liger_kernel") is not None:
        from liger_kernel.ops.rope import LigerRopeFunction

        cos_hf = torch.cat((cos, cos), -1).to(torch.bfloat16)  # (B, T, D), what HF's rotary module hands Liger
        sin_hf = torch.cat((sin, sin), -1).to(torch.bfloat16)
        contenders["Liger-Kernel rope (in place)"] = (dict(contender="Liger-Kernel rope (in place)"),
                                                      lambda: LigerRopeFunction.apply(q, k, cos_hf, sin_hf))
    for source, cfg in chosen:
        for inplace in (False, True):
            label = (f"ropebook {source:<8} BT={cfg[0]} BH={cfg[1]:<2} w={cfg[2]}{' together' if cfg[3] else ''}"
                     f"{' in place' if inplace else ''}")
            meta = dict(BLOCK_T=cfg[0], BLOCK_H=cfg[1], num_warps=cfg[2], together=cfg[3], angles=source,
                        inplace=inplace, default=cfg == default_of(source, T))
            contenders[label] = (meta, _variant(q, k, cache, off, cos, sin, source, cfg, inplace))
    q0, k0 = q_mem.clone(), k_mem.clone()
    rounds: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(_config.FINAL_ROUNDS):
        for label, (_, fn) in contenders.items():
            q_mem.copy_(q0)  # fresh inputs for every contender: in-place ones rotate them many times
            k_mem.copy_(k0)
            rounds[label].append(_timing._time(fn, T == 1, rep=60) * 1e3)
    out = []
    for label, (meta, _) in contenders.items():
        out.append(dict(case=name, stage="final", **meta, rounds_us=rounds[label], us=statistics.median(rounds[label])))
    liger = next((r["us"] for r in out if r.get("contender", "").startswith("Liger")), None)
    print(f"\nfinal {name}: median of {_config.FINAL_ROUNDS} interleaved rounds" + ("" if liger else " (Liger-Kernel not installed)"))
    for label, r in sorted(zip(contenders, out), key=lambda lr: lr[1]["us"]):
        ratio = f"{r['us'] / liger:6.3f}x Liger" if liger else ""
        print(f"  {label:<54} {r['us']:8.2f} us  {min(r['rounds_us']):7.2f}-{max(r['rounds_us']):<7.2f} {ratio}"
              + ("  (default)" if r.get("default") else ""))
    return out
