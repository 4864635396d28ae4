"""A benchmark result as markdown tables, for the docs and the terminal."""

from __future__ import annotations

from typing import Any

from paczero.bench.trunk import trunk_markdown

MIB = 2**20


def markdown(out: dict[str, Any]) -> str:
    """The result as markdown tables: setup, timings, memory, sweeps, targets."""
    lines = [*_setup(out["config"], out["machine"]), "", *_timings(out)]
    if "trunk" in out:
        lines += trunk_markdown(out["trunk"])
    if "bookkeeping" in out:
        lines.append(
            "\nprivacy bookkeeping per release at M = 128, N = 1000: "
            + ", ".join(f"{k} {v['seconds'] * 1e3:.3f} ms" for k, v in out["bookkeeping"].items())
        )
    if "memory" in out:
        lines += _memory(out["memory"])
    for sweep in ("sweep_n", "sweep_m"):
        if sweep in out:
            lines += _sweep(out[sweep])
    lines += ["", "| target | value | threshold | met |", "|---|---|---|---|"]
    for t in out["targets"]:
        lines.append(
            f"| {t['target']} | {t['value']:.4g} | {t['op']} {t['threshold']} | "
            f"{'yes' if t['met'] else 'NO'} |"
        )
    lines += [f"\n{n}" for n in out["notes"]]
    return "\n".join(lines) + "\n"


def _setup(c: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """The model, the sizes and the machine a result was measured with."""
    return [
        f"**{c['model']}** ({c['track']}, {c['dtype']}, {c['trainable_parameters']:,} trainable), task "
        f"{c['task']}, N = {c['pool_size']}, M = {c['subsets']}, K = {c['directions']}, micro-batch "
        f"{c['micro_batch_size']}, median of {c['repeats']}",
        f"machine: {m['processor']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads, "
        f"load {', '.join(f'{x:.2f}' for x in m['load_average'])}; {m['date']}; torch {m['torch']}, "
        f"transformers {m['transformers']}" + (f"; GPU {m['cuda']}" if m["cuda"] else ""),
    ]


def _timings(out: dict[str, Any]) -> list[str]:
    """The forward, each mechanism's step and the reference protocol's step, against two forwards."""
    lines = [
        "| measurement | seconds | ratio to 2 × forward | real tokens/s |",
        "|---|---|---|---|",
        f"| bare forward over the step's batch | {out['forward_s']:.3f} | 0.5 | "
        f"{out['tokens_per_sweep']['real'] / out['forward_s']:,.0f} |",
    ]
    for name, s in out["steps"].items():
        lines.append(
            f"| step, {name} | {s['step_s']:.3f} | {s['ratio_to_two_forwards']:.3f} | "
            f"{s['real_tokens_per_s']:,.0f} |"
        )
    if "reference" in out:
        r = out["reference"]
        lines.append(
            f"| reference protocol step, {r['mechanism']} | {r['reference_step_s']:.3f} | "
            f"{r['reference_step_s'] / (2 * out['forward_s']):.3f} | "
            f"{2 * out['tokens_per_sweep']['real'] / r['reference_step_s']:,.0f} |"
        )
        lines.append(
            f"\nreference / ours = {r['ratio']:.2f} (ours {r['ours_step_s']:.3f} s); tokens per sweep "
            f"ours {out['tokens_per_sweep']['with_padding']:,} (real {out['tokens_per_sweep']['real']:,}), "
            f"reference {r['reference_tokens_per_sweep']['with_padding']:,}"
        )
    return lines


def _memory(mem: dict[str, Any]) -> list[str]:
    """Peak memory of inference (two sweeps) and of a training step."""
    inf, step = mem["inference"], mem["step"]
    return [
        "",
        "| memory | after load (MiB) | peak (MiB) |",
        "|---|---|---|",
        *(
            f"| {label} | {ph['baseline_rss_bytes'] / MIB:,.0f} | {ph[mem['metric']] / MIB:,.0f} |"
            for label, ph in (("inference (2 sweeps)", inf), ("training step", step))
        ),
        f"\npeak ratio ({mem['metric']}) {mem['ratio']:.3f}"
        + (
            f"; increment over the loaded model {mem['increment_ratio']:.3f}"
            if "increment_ratio" in mem
            else ""
        ),
    ]


def _sweep(s: dict[str, Any]) -> list[str]:
    """Step time over a swept size (N or M), with the linear fit when there is one."""
    lines = ["", f"| {s['key']} | " + " | ".join(map(str, s["values"])) + " |"]
    lines += ["|---" * (len(s["values"]) + 1) + "|"]
    lines += ["| step s | " + " | ".join(f"{t:.3f}" for t in s["step_s"]) + " |"]
    if "fit" in s:
        f = s["fit"]
        lines.append(
            f"\nlinear fit: {f['slope_s_per_example'] * 1e3:.4f} ms per example + "
            f"{f['intercept_s']:.4f} s, R² = {f['r2']:.4f}, largest residual "
            f"{f['max_relative_residual']:.1%}"
        )
    return lines
