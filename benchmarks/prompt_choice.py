"""Zero-shot SST-2 accuracy of SmolLM2-135M-Instruct under several prompt templates, one chosen on dev.

python benchmarks/prompt_choice.py --data-dir DIR [--out benchmarks/results/prompt-choice-smollm2.json]

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

from paczero.models import ModelConfig, load_model
from paczero.tasks import TaskConfig, build_objective, load_splits

INSTRUCTION = "Is the sentiment of this movie review positive or negative? Answer with one word.\n"


def templates(tokenizer) -> dict[str, tuple[str, list[str]]]:
    """name -> (prompt template, label words [negative, positive])."""
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": INSTRUCTION + "Review: {sentence}"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    return {
        "mezo": ("{sentence} It was", [" terrible", " great"]),
        "plain": ("Review: {sentence}\nSentiment (positive or negative):", [" negative", " positive"]),
        "chat": (chat, ["negative", "positive"]),
        "chat-capitalised": (chat, ["Negative", "Positive"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="SST-2 folder (train.tsv, dev.tsv)")
    parser.add_argument("--out", default="benchmarks/results/prompt-choice-smollm2.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(ModelConfig(name="smollm2-135m"))
    results: dict[str, dict] = {}
    for name, (prompt, words) in templates(loaded.tokenizer).items():
        task = TaskConfig(
            name="sst2", data_dir=args.data_dir, pool_size=256, dev_size=300, test_size=872,
            prompt=prompt, label_words=words,
        )  # fmt: skip
        splits = load_splits(task)
        objective = build_objective(task, loaded.tokenizer, 32)
        assert objective.single_token, f"{name}: label words must be one token each"
        start = time.perf_counter()
        scores = {
            split: objective.evaluate(loaded.model, objective.prepare(getattr(splits, split), loaded.device))
            for split in ("dev", "test")
        }
        seconds = time.perf_counter() - start
        results[name] = {"prompt": prompt, "label_words": words, **scores, "seconds": seconds}
        print(name, json.dumps(scores), flush=True)
    chosen = max(results, key=lambda n: results[n]["dev"]["accuracy"])
    out = {"model": "smollm2-135m", "dev_size": 300, "test_size": 872, "data_seed": 0, "chosen": chosen}
    Path(args.out).write_text(json.dumps({**out, "templates": results}, indent=2) + "\n")
    print("chosen on dev:", chosen)


if __name__ == "__main__":
    main()
