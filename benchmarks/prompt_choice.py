"""Zero-shot SST-2 accuracy of SmolLM2-135M-Instruct under several prompt templates, one chosen on dev.

python benchmarks/prompt_choice.py [--data-dir DIR] [--out benchmarks/results/prompt-choice-smollm2.json]

Dev: 300 examples drawn from SST-2 train, disjoint from the N = 256 pool (the MeZO protocol, data seed 0).
Test: all 872 validation examples. Label words are scored as the model would answer: after "It was" the
MeZO words, after "Sentiment (positive or negative):" the space-led words, and at the start of the chat
template's assistant turn the bare (no leading space) words.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.tasks.config import TaskConfig
from paczero.tasks.registry import build_objective, load_splits

INSTRUCTION = "Is the sentiment of this movie review positive or negative? Answer with one word.\n"


def templates(tokenizer) -> dict[str, tuple[str, list[list[str]]]]:
    """prompt name -> (template, label word sets [negative, positive] scored from the same forward)."""
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": INSTRUCTION + "Review: {sentence}"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    return {
        "mezo": ("{sentence} It was", [[" terrible", " great"]]),
        "plain": ("Review: {sentence}\nSentiment (positive or negative):", [[" negative", " positive"]]),
        "chat": (chat, [["negative", "positive"], ["Negative", "Positive"]]),
    }


def metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean cross-entropy of two-option scores."""
    loss = F.cross_entropy(scores, labels, reduction="none")
    return {"loss": float(loss.mean()), "accuracy": float((scores.argmax(-1) == labels).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="SST-2 folder (train.tsv, dev.tsv); default: the copy shipped with paczero"
    )
    parser.add_argument("--out", default="benchmarks/results/prompt-choice-smollm2.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(ModelConfig(name="smollm2-135m"))
    out: dict = {"model": "smollm2-135m", "pool_size": 256, "dev_size": 300, "test_size": 872, "data_seed": 0}
    results: dict[str, dict] = {}
    prompts = templates(loaded.tokenizer)
    for split in ("dev", "test"):  # every template's dev score first: that is what the choice needs
        for name, (prompt, word_sets) in prompts.items():
            words = [w for pair in word_sets for w in pair]
            task = TaskConfig(
                name="sst2", data_dir=args.data_dir, pool_size=256, dev_size=300, test_size=872,
                prompt=prompt, label_words=words,
            )  # fmt: skip
            objective = build_objective(task, loaded.tokenizer, 32)
            assert objective.single_token, f"{name}: label words must be one token each"
            examples = getattr(load_splits(task), split)
            data = objective.prepare(examples, loaded.device)
            start = time.perf_counter()
            scores = objective.option_scores(loaded.model, data)
            seconds = time.perf_counter() - start
            for i, pair in enumerate(word_sets):
                key = name if i == 0 else f"{name}-capitalised"
                entry = results.setdefault(key, {"prompt": prompt, "label_words": pair})
                entry[split] = {**metrics(scores[:, 2 * i : 2 * i + 2], data.labels), "seconds": seconds}
                print(key, split, json.dumps(entry[split]), flush=True)
            out["chosen"] = max(
                (n for n in results if "dev" in results[n]), key=lambda n: results[n]["dev"]["accuracy"]
            )
            Path(args.out).write_text(json.dumps({**out, "templates": results}, indent=2) + "\n")
    print("chosen on dev:", out["chosen"])


if __name__ == "__main__":
    main()
