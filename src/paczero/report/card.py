"""Every run's privacy statement (``privacy.md``), model card and privacy context, from public values only."""

from __future__ import annotations

import re
from typing import Any

from paczero.models.config import hub_id
from paczero.privacy.ledger import Guarantee
from paczero.rundir import INSECURE_NOTE

GUARANTEES = {
    "zero-mi": "PAC privacy with zero mutual information: I(S*; Y_1:T) = 0 exactly",
    "mi-budget": "PAC privacy with a mutual-information budget: I(S*; Y_1:T) ≤ B nats",
    "none": "no privacy guarantee (non-private reference)",
    "unbounded-leak": "no privacy guarantee: the release reads the secret subset without noise (ablation)",
    "dp": "(ε, δ)-differential privacy of every pool example (add/remove one), by a dp-accounting accountant",
}


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


UNIT_OF_PRIVACY = (
    "one training example's membership in the secret subset S* (one of the M public candidate subsets of "
    "the pool, chosen uniformly at random)"
)
MATCHING_RULE = (
    "a PAC run and a DP run are matched when their membership-attack bounds are equal: "
    "p*(I) = (e^ε + δ)/(1 + e^ε) at prior 1/2 (the matched ε of a PAC run uses δ = 0)"
)
NOT_COVERED = (
    "membership in the pool itself: the pool and the candidate subsets are public",
    "hyperparameters, prompts or stopping rules chosen by looking at the private pool",
    "the dev and test sets, and whatever the base model memorised before fine-tuning",
    "side channels (timing, memory) and the run's private/ folder, which holds the secret: keep it private",
)
VERSIONED = ("paczero", "torch", "transformers", "peft", "numpy")


def library_versions() -> dict[str, str]:
    """Installed versions of the packages a run's numbers depend on ("not installed" when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


DP_UNIT_OF_PRIVACY = (
    "one example of the pool, added or removed (the DP run trains on Poisson samples of the whole pool; the "
    "candidate subsets play no part)"
)
DP_NOT_COVERED = (
    "hyperparameters, prompts or stopping rules chosen by looking at the private pool",
    "the dev and test sets, and whatever the base model memorised before fine-tuning",
    "side channels (timing, memory), the run's private/ folder and the checkpoints (they predict the batches "
    "and noise)",
)


def privacy_context(dp: bool = False) -> dict[str, Any]:
    """The run-independent part of summary.json's privacy block: unit, matching rule, exclusions, versions."""
    return {
        "unit": DP_UNIT_OF_PRIVACY if dp else UNIT_OF_PRIVACY,
        "matching_rule": MATCHING_RULE,
        "not_covered": list(DP_NOT_COVERED if dp else NOT_COVERED),
        "versions": library_versions(),
    }


def _spending_lines(p: dict[str, Any]) -> list[str]:
    """How the budget was spent: ε at δ for DP runs, free vs noisy releases and MI for the others."""
    if p.get("epsilon_spent") is not None:
        return [
            f"- Budget: (ε, δ) = ({_fmt(p.get('epsilon'))}, {_fmt(p.get('delta'))}); spent ε = "
            f"{_fmt(p['epsilon_spent'])} over {p.get('steps', 'n/a')} steps ({p.get('accountant', 'n/a')} "
            f"accountant, noise multiplier {_fmt(p.get('noise_multiplier'))}, Poisson rate "
            f"{_fmt(p.get('sampling_rate'))}).",
        ]
    free = p["releases"] - p["noisy"] - p["exact"]
    public = free - p["unanimous"] - p["coins"]
    schedule = f", {p['budget_schedule']} schedule" if p.get("budget_schedule") else ""
    return [
        f"- Releases: {p['releases']}: {free} free of charge ({p['unanimous']} unanimous, {p['coins']} coin "
        f"flips, {public} public), {p['noisy']} noisy, {p['exact']} exact; unanimity rate of the subset "
        f"signs {_fmt(p['unanimity_rate'], '.3f')}.",
        f"- Budget: MI spent {_fmt(p['mi_spent'])} nats of {_fmt(p['mi_budget'])}{schedule}.",
    ]


def privacy_statement(summary: dict[str, Any]) -> str:
    """Markdown: what the run's privacy numbers mean and what they leave out; it never names the secret."""
    p = summary["privacy"]
    guarantee = GUARANTEES.get(p["guarantee"], p["guarantee"])
    if p.get("epsilon_spent") is not None:
        matched = f"- Matched MI (same attack bound): {_fmt(p.get('matched_mi'))} nats."
    else:
        matched = f"- Matched DP ε (same attack bound, δ = 0): {_fmt(p.get('matched_epsilon'))}."
    versions = p.get("versions") or library_versions()
    lines = [
        "# Privacy statement",
        "",
        *([f"**{INSECURE_NOTE}**", ""] if p.get("private") is False else []),
        f"- Mechanism: `{p['mechanism']}` — {guarantee}.",
        f"- Unit of privacy: {p.get('unit', UNIT_OF_PRIVACY)}.",
        f"- Secret model: pool of N = {p.get('pool_size', 'n/a')} examples, M = {p.get('subsets', 'n/a')} "
        "candidate subsets, each example in exactly M/2 of them, so the prior probability that an example "
        f"is in S* is {p.get('prior', 0.5)}; the adversary knows the pool, the subsets, θ_0, every public "
        "seed and every release."
        if not Guarantee(p["guarantee"]).is_dp
        else f"- Threat model: any adversary who sees every release, for any two pools that differ in one "
        f"example (N = {p.get('pool_size', 'n/a')}; the Poisson sampling is kept secret); prior 1/2.",
        *_spending_lines(p),
        f"- Membership-attack success bound: {_fmt(p.get('attack_bound'))} (0.5 means no better than a coin; "
        "MI: largest p with KL(Bern(p) ‖ Bern(1/2)) ≤ I; DP: (e^ε + δ)/(1 + e^ε)).",
        matched,
        f"- Matching rule: {p.get('matching_rule', MATCHING_RULE)}.",
        "- Library versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "- Not covered: " + "; ".join(p.get("not_covered", NOT_COVERED)) + ".",
    ]
    return "\n".join(lines) + "\n"


TASK_DATASETS = {"sst2": "stanfordnlp/sst2", "squad": "rajpurkar/squad"}
TASK_TYPES = {"accuracy": "text-classification"}  # by primary metric; anything else generates text
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
CARD_SPLITS = {"dev (selected)": "validation", "test": "test"}


def guarantee_sentence(summary: dict[str, Any]) -> str:
    """The privacy guarantee of a run in one sentence (the card's summary of its privacy statement)."""
    p = summary["privacy"]
    if p.get("private") is False:
        return "This model carries no privacy guarantee: its privacy randomness was deterministic."
    text = f"Trained with `{summary['mechanism']}`: {GUARANTEES.get(p['guarantee'], p['guarantee'])}"
    if p.get("epsilon_spent") is not None:
        text += f", spent ε = {_fmt(p['epsilon_spent'])} at δ = {_fmt(p.get('delta'))}"
    elif p.get("mi_spent") is not None:
        text += f", spent {_fmt(p['mi_spent'])} nats"
    bound = p.get("attack_bound")
    if bound is not None and bound < 1:
        text += f"; a membership attack succeeds with probability at most {_fmt(bound)}"
    return text + "."


def eval_results(summary: dict[str, Any]) -> list[Any]:
    """The dev (selected step) and test metrics as the Hub's ``model-index`` evaluation results."""
    from huggingface_hub import EvalResult

    task_type = TASK_TYPES.get(summary["primary_metric"], "text-generation")
    dataset = TASK_DATASETS.get(summary["task"], summary["task"])
    return [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset,
            dataset_name=summary["task"],
            dataset_split=CARD_SPLITS[row],
            metric_type=metric,
            metric_name=f"{row.split()[0]} {metric}",
            metric_value=value,
        )
        for row, values in _metric_rows(summary).items()
        if row in CARD_SPLITS
        for metric, value in values.items()
    ]


def card_data(summary: dict[str, Any], merged: bool = False) -> Any:
    """The card's metadata (``huggingface_hub.ModelCardData``): base model, data set, tags, eval results."""
    from huggingface_hub import ModelCardData

    adapter = summary["track"] == "lora" and not merged
    base = hub_id(summary["model"])
    kind = "lora" if summary["track"] == "lora" else "full-finetune"
    metrics = sorted({k for split in _metric_rows(summary).values() for k in split})
    return ModelCardData(
        base_model=base if HUB_ID.fullmatch(base) else None,
        datasets=[TASK_DATASETS[summary["task"]]] if summary["task"] in TASK_DATASETS else None,
        library_name="peft" if adapter else "transformers",
        tags=["paczero", "zeroth-order", "pac-privacy", summary["mechanism"], kind]
        + (["merged"] if merged and summary["track"] == "lora" else []),
        pipeline_tag="text-generation",
        metrics=metrics or None,
        model_name=f"{summary['model'].rsplit('/', 1)[-1]}-{summary['task']}-{summary['mechanism']}",
        eval_results=eval_results(summary) or None,
        paczero_version=summary["paczero_version"],
    )


def model_card(summary: dict[str, Any], merged: bool = False) -> str:
    """README.md for the saved model: a Hugging Face card (``huggingface_hub.ModelCard``) with metadata, eval
    results, the task, the metrics and the privacy statement.

    Built from the summary alone, which holds no secret; timings are left out so that runs whose released
    transcripts are identical (ZPL under different secrets) get identical cards. ``merged``: the card of a
    LoRA run's adapter merged into the base weights (``paczero export --merge``).
    """
    from huggingface_hub import ModelCard

    data = card_data(summary, merged)
    body = _card_body(summary, merged, data.metrics or [])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def _card_body(summary: dict[str, Any], merged: bool, metrics: list[str]) -> str:
    lora = summary["track"] == "lora"
    what = "LoRA adapter" + (", merged into the base weights" if merged else "") if lora else "all weights"
    rows = [
        f"| {name} | " + " | ".join(_fmt(vals.get(k)) for k in metrics) + " |"
        for name, vals in _metric_rows(summary).items()
    ]
    hp = summary["hyperparameters"]
    return "\n".join(
        [
            f"# {summary['model']} fine-tuned on {summary['task']} with `{summary['mechanism']}`",
            "",
            *([f"**{INSECURE_NOTE}**", ""] if summary["privacy"].get("private") is False else []),
            guarantee_sentence(summary),
            "",
            f"Zeroth-order fine-tuning ({what}, {summary['trainable_parameters']} trainable parameters) "
            f"with paczero {summary['paczero_version']}: {summary['steps_run']} of "
            f"{summary['steps_planned']} steps ({summary['stop_reason']}), K = {hp['directions']} "
            f"direction(s) per step, learning rate {hp['lr']} ({hp['schedule']}), checkpoint of step "
            f"{summary['selected_step']} selected by {hp['select_by']} on the dev set.",
            "",
            "## Metrics",
            "",
            "| split | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
            *rows,
            "",
            privacy_statement(summary).replace("# Privacy statement", "## Privacy statement", 1).rstrip(),
            "",
        ]
    )


def _metric_rows(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Dev (start and selected step) and test metrics that the run measured."""
    dev = summary["dev"]
    rows = {
        "dev (start)": dev.get("start"),
        "dev (selected)": dev.get("selected"),
        "test": summary.get("test"),
    }
    return {
        name: {k: v for k, v in vals.items() if k != "step"}
        for name, vals in rows.items()
        if vals and len(vals) > 1
    }
