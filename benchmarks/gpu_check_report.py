"""Markdown rendering of ``gpu_check.py``'s results (the JSON holds everything; this is for reading)."""

from __future__ import annotations

from typing import Any

RNG_EXPLANATION = (
    "The direction z of a seed is drawn by a generator on the parameters' device: the CUDA generator "
    "(Philox) and the CPU generator (Mersenne Twister) give different z for the same seed, so a CUDA run is "
    "expected to differ from the CPU run from step 1 on (the rows above show whether it does). Runs and "
    "transcript replays reproduce on the same device type."
)
KERNEL_EXPLANATION = (
    "With the same z (CPU-drawn), only the kernels differ: CUDA matrix products and reductions sum in "
    "another order, so per-example losses differ by rounding. A sign (ZPL, MI) changes only when a "
    "subset's mean is that close to zero; a real-valued release (MeZO, DP) differs by the rounding itself. "
    "After the first different release the weights differ, and the later steps are not comparable."
)


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _status(entry: dict[str, Any]) -> str:
    text = f"**{entry['status']}** ({entry.get('seconds', 0):.0f} s of {entry.get('limit_s', 0):.0f} s)"
    if entry.get("reason"):
        text += f": {entry['reason']}"
    return text


def _correctness(r: dict[str, Any]) -> list[str]:
    cpu, dev = r["devices"]
    lines = [
        f"Compared: {cpu} against {dev}. Note: {r['note']}.",
        "",
        "| mechanism | variant | identical steps | released identical | first difference (step: fields) "
        "| max abs released diff | privacy.md identical | privacy block identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mech, variants in r["mechanisms"].items():
        for variant, c in variants.items():
            first = c["first_difference_step"]
            fields = ", ".join(c["fields_differing_at_first_difference"])
            where = "none" if first is None else f"{first}: {fields}"
            same = f"{c['identical_steps']} / {c['steps'][0]}"
            diff = f"{c['max_abs_released_difference']:.3g}"
            lines.append(
                _row(
                    mech,
                    variant,
                    same,
                    c["released_identical"],
                    where,
                    diff,
                    c["privacy_md_identical"],
                    c["privacy_block_identical"] or "False: " + ", ".join(c["privacy_block_differences"]),
                )
            )
    if r.get("dry_run"):
        lines += ["", f"Dry run: {r['dry_run']}."]
    lines += ["", RNG_EXPLANATION, "", KERNEL_EXPLANATION]
    return lines


def _resume(r: dict[str, Any]) -> list[str]:
    lines = [
        "| mechanism | device | kill | lines before kill | byte-identical "
        "| differing | resume exit | negative control detected | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mech, run in r["runs"].items():
        control = run.get("negative_control", {}).get("detected")
        lines.append(
            _row(
                mech,
                run["device"],
                run["kill"],
                run["lines_before_kill"],
                run["byte_identical"],
                len(run["differing"]),
                run["resume_exit_code"],
                control,
                run["passed"],
            )
        )
    lines += [
        "",
        "Resume never computes a released step again, so every line written before the kill must come back "
        "byte for byte. The negative control changes one pre-kill line in a copy and checks that the "
        "comparison flags it.",
    ]
    return lines


def _cell_row(c: dict[str, Any]) -> str:
    if c.get("status") != "ok":
        return f"| {c['dtype']} | {c['track']} | {c.get('status')}: {c.get('reason', '')} |||||||"
    step = c["steps"]["paczero-zpl"]
    m = c["memory"]
    return _row(
        c["dtype"],
        c["track"],
        c["micro_batch_size"],
        f"{c['forward_s']:.3f}",
        f"{step['step_s']:.3f}",
        f"{step['step_over_two_forwards']:.3f}",
        f"{m['loaded_gib']:.2f}",
        f"{m['inference_peak_gib']:.2f}",
        f"{m['step_peak_gib']:.2f} ({m['step_over_inference']:.3f})",
    )


def _cells(r: dict[str, Any]) -> list[str]:
    s = r["shape"]
    lines = [
        f"{s['name']}: hidden {s['hidden']}, {s['layers']} layers, {s['heads']} heads, FFN {s['ffn']}, "
        f"vocabulary {s['vocab']} ({r['parameters']:,} parameters); {r['weights']}. Tokenizer: "
        f"{r['tokenizer']}. Data: {r['data']}, N = {r['pool_size']}; mechanism {r['mechanism']}; "
        f"micro-batch {r['micro_batch_size']}; TF32 matmul {r['tf32_matmul']}.",
        "",
        "| dtype | track | micro-batch | forward s | step s | step / 2 forwards | loaded GiB "
        "| inference peak GiB | step peak GiB (/ inference) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return lines + [_cell_row(c) for c in r["cells"]]


def _smollm2(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r['model']} ({r['note']}), config `{r['config']}`.",
        "",
        "| run | N | micro-batch | forward s | MeZO step s | ZPL step s | MI step s | ZPL step / 2 forwards "
        "| 100 training steps (ZPL) s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        if run.get("status") != "ok":
            lines.append(f"| {run['label']} | {run.get('status')}: {run.get('reason', '')} ||||||||")
            continue
        st = run["steps"]
        lines.append(
            _row(
                run["label"],
                run["pool_size"],
                run["micro_batch_size"],
                f"{run['forward_s']:.3f}",
                *(f"{st[m]['step_s']:.3f}" for m in ("mezo", "paczero-zpl", "paczero-mi")),
                f"{st['paczero-zpl']['step_over_two_forwards']:.3f}",
                f"{run['replication_train_s_per_run']:.1f}",
            )
        )
    return lines


RENDER = {
    "correctness": _correctness,
    "resume": _resume,
    "opt-1.3b": _cells,
    "smollm2-135m": _smollm2,
    "opt-6.7b": _cells,
}


def markdown(results: dict[str, Any]) -> str:
    """The whole results file as markdown: one section per phase, in the order run."""
    m = results.get("machine") or {}
    lines = [
        f"# GPU check ({results['mode']})",
        "",
        f"Command: `{results['command']}`; started {results['started']}; {results.get('elapsed_s', 0):.0f} s "
        f"of a {results['budget_s']:.0f} s budget.",
    ]
    if m:
        lines.append(
            f"Machine: {m.get('cuda') or m.get('processor')}; torch {m.get('torch')}, transformers "
            f"{m.get('transformers')}, Python {m.get('python')}."
        )
    lines += [f"Note: {n}." for n in results["notes"]]
    for name in results["phase_order"]:
        entry = results["phases"].get(name)
        if entry is None:
            continue
        lines += ["", f"## {name}: {entry['question']}", "", _status(entry)]
        if entry.get("result"):
            lines += ["", *RENDER[name](entry["result"])]
        for error in (entry.get("result") or {}).get("errors", []):
            lines += ["", f"Error: `{error.strip()[:1500]}`"]
        if entry.get("error"):
            lines += ["", "```", entry["error"].strip()[-1500:], "```"]
    return "\n".join(lines) + "\n"
