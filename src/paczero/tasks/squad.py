"""Generative question answering (SQuAD v1.1): greedy answers scored by F1/EM, and the −F1 objective.

The per-example loss of the paper is −F1 of the greedy answer (at most ``max_new_tokens`` tokens, cut at
the first newline) against the best-matching gold answer: a non-differentiable objective that a
zeroth-order step optimises directly. ``objective: ce`` offers the differentiable alternative, the
teacher-forced mean token cross-entropy of the first gold answer. F1 and exact match use the normalisation
of the official SQuAD v1.1 evaluation script.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paczero.tasks.classification import last_logits, mean_trailing_logprob
from paczero.tasks.custom import RecordSchema, hub_examples, read_examples, render
from paczero.tasks.data import HUB, DataUnavailable, Example, local_files, packaged_data
from paczero.tasks.generation import (
    PaddedBatch,
    greedy_decode,
    left_pad,
    length_sorted_batches,
    newline_stop_ids,
)

SQUAD_SCHEMA = RecordSchema(text_fields=("title", "context", "question"), answer_field="answers")
OBJECTIVES = ("f1", "ce")

# ---------------------------------------------------------------------------------------------------------
# Metrics (official SQuAD v1.1 semantics)

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised strings (0 when they share no token, as in SQuAD v1.1)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def best_scores(prediction: str, golds: tuple[str, ...]) -> tuple[float, float]:
    """(F1, EM) against the best-matching gold answer."""
    return max(f1_score(prediction, g) for g in golds), max(exact_match(prediction, g) for g in golds)


# ---------------------------------------------------------------------------------------------------------
# Data

SQUAD_FILES = {
    "train": ("train.jsonl", "train-v1.1.json"),
    "validation": ("dev.jsonl", "validation.jsonl", "dev-v1.1.json"),
}


def read_official_json(path: Path) -> list[Example]:
    """The official nested layout (data → paragraphs → qas), as ``evaluate-v1.1.py`` reads it."""
    records = []
    try:
        for a, article in enumerate(json.loads(path.read_text(encoding="utf-8"))["data"]):
            for p, paragraph in enumerate(article["paragraphs"]):
                for q, qa in enumerate(paragraph["qas"]):
                    record = {
                        "title": article["title"],
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": [answer["text"] for answer in qa["answers"]],
                    }
                    records.append((f"{path}: article {a} paragraph {p} question {q}", record))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a SQuAD v1.1 JSON file ({type(err).__name__}: {err})") from None
    return SQUAD_SCHEMA.examples(records)


def load_squad(data_dir: str | None) -> tuple[list[Example], list[Example]]:
    """SQuAD v1.1 train and validation: the packaged sample, a local folder (JSONL or official JSON), or
    the hub (``hub``)."""
    if data_dir == HUB:
        try:
            train = hub_examples("rajpurkar/squad", None, "train", SQUAD_SCHEMA)
            return train, hub_examples("rajpurkar/squad", None, "validation", SQUAD_SCHEMA)
        except RuntimeError as err:
            raise DataUnavailable(
                f"task.data_dir: hub: {err}; or leave task.data_dir unset for the SQuAD sample shipped "
                "with paczero, or set it to a folder with train.jsonl and dev.jsonl"
            ) from None
    root = packaged_data("squad") if data_dir is None else Path(data_dir)
    train, validation = (
        read_official_json(path) if path.suffix == ".json" else read_examples(path, SQUAD_SCHEMA)
        for path in local_files(root, SQUAD_FILES, "SQuAD")
    )
    return train, validation


SUBJECTS = ("movie", "film", "story", "plot", "acting", "music", "ending", "script", "cast", "dialogue")
QUALITIES = ("great", "good", "bad", "terrible", "wonderful", "awful", "boring", "brilliant", "dull", "fine")


def synthetic_qa(n: int, seed: int) -> list[Example]:
    """Extractive QA over the tiny models' vocabulary, in SQuAD's fields: the answer is in the context."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for _ in range(n):
        s1, s2 = (SUBJECTS[i] for i in rng.choice(len(SUBJECTS), size=2, replace=False))
        q1, q2 = (QUALITIES[i] for i in rng.choice(len(QUALITIES), size=2))
        asked, answer = (s1, q1) if rng.integers(2) else (s2, q2)
        fields = {
            "title": s1,
            "context": f"the {s1} was {q1} and the {s2} was {q2} .",
            "question": f"how was the {asked} ?",
        }
        out.append(Example(fields=fields, answers=(answer,)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Objective


@dataclass
class QASet:
    """A tokenized QA example set: generation micro-batches, gold answers, teacher-forced batches (ce)."""

    size: int
    answers: list[tuple[str, ...]]
    prompts: list[PaddedBatch]
    forced: list[tuple[PaddedBatch, torch.Tensor]]  # (prompt + first answer, answer length); ce only
    keep: int  # logits_to_keep of the teacher-forced pass


class GenerativeQA:
    """Greedy answers scored against gold answers; per-example loss −F1 (``f1``) or teacher-forced CE."""

    primary_metric = "f1"  # higher is better; the paper selects the best dev state by it
    metrics = ("f1", "exact_match")
    reads_last_positions = False  # greedy decoding runs a KV cache over positions it generates
    head_rows = None  # decoding reads the whole vocabulary

    def __init__(
        self,
        tokenizer,
        prompt: str,
        micro_batch_size: int,
        max_length: int,
        max_new_tokens: int = 50,
        objective: str = "f1",
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"generation objective must be one of {OBJECTIVES}, got {objective!r}")
        max_length = min(max_length, tokenizer.model_max_length)  # a tokenizer may know the model's context
        if max_length <= max_new_tokens:
            raise ValueError(f"task.max_length ({max_length}) must exceed max_new_tokens ({max_new_tokens})")
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.micro_batch_size = micro_batch_size
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.objective = objective
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.stop_ids = newline_stop_ids(tokenizer)

    def prepare(self, examples: list[Example], device: torch.device) -> QASet:
        for i, ex in enumerate(examples):
            if not ex.answers:
                raise ValueError(f"example {i} has no gold answer")
        prompts = [self.tokenizer(render(self.prompt, ex)).input_ids for ex in examples]
        budget = self.max_length - self.max_new_tokens
        batches = length_sorted_batches(
            [p[-budget:] for p in prompts], self.micro_batch_size, self.pad_id, device
        )
        forced, keep = [], 0
        if self.objective == "ce":
            targets = [self._target_ids(ex) for ex in examples]
            seqs = [p[-(self.max_length - len(t)) :] + t for p, t in zip(prompts, targets, strict=True)]
            for batch in batches:  # the same rows as the generation batch: a shard holds both
                rows = batch.rows.tolist()
                padded = left_pad([seqs[r] for r in rows], rows, self.pad_id, device)
                forced.append((padded, torch.tensor([len(targets[r]) for r in rows])))
            keep = max(map(len, targets)) + 1
        answers = [ex.answers for ex in examples]
        return QASet(size=len(examples), answers=answers, prompts=batches, forced=forced, keep=keep)

    def _target_ids(self, example: Example) -> list[int]:
        """The first gold answer, then a newline where the tokenizer has one: the answer and where it ends."""
        text = f" {example.answers[0]}\n"
        return self.tokenizer(text, add_special_tokens=False).input_ids[: self.max_new_tokens]

    def generate(self, model, data: QASet) -> list[str]:
        """The greedy answer of every example: decoded text up to the first newline, stripped."""
        stops = torch.tensor(self.stop_ids, device=data.prompts[0].input_ids.device)
        texts = [""] * data.size
        for batch in data.prompts:
            answers = greedy_decode(model, batch, self.max_new_tokens, stops)
            for row, ids in zip(batch.rows.tolist(), answers, strict=True):
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                texts[row] = text.split("\n", 1)[0].strip()
        return texts

    def scores(self, model, data: QASet) -> tuple[np.ndarray, np.ndarray]:
        """Per-example (F1, EM) of the greedy answers."""
        pairs = [best_scores(p, g) for p, g in zip(self.generate(model, data), data.answers, strict=True)]
        f1, em = zip(*pairs, strict=True)
        return np.asarray(f1), np.asarray(em)

    @torch.inference_mode()
    def teacher_forced_losses(self, model, data: QASet) -> torch.Tensor:
        """Mean token cross-entropy of the first gold answer after the prompt, per example."""
        losses = torch.zeros(data.size, dtype=torch.float32)
        for batch, answer_len in data.forced:
            logits = last_logits(model, batch, data.keep)
            losses[batch.rows] = -mean_trailing_logprob(logits, batch.input_ids, answer_len).cpu()
        return losses

    def losses(self, model, data: QASet) -> torch.Tensor:
        """Per-example loss, shape (n,): −F1 of the greedy answer, or the teacher-forced CE."""
        if self.objective == "ce":
            return self.teacher_forced_losses(model, data)
        return torch.as_tensor(0.0 - self.scores(model, data)[0], dtype=torch.float32)

    def per_example(self, model, data: QASet) -> dict[str, torch.Tensor]:
        """Loss, F1 and exact match of every example: the metrics are their means."""
        f1, em = self.scores(model, data)
        f1_t = torch.as_tensor(f1, dtype=torch.float32)
        loss = self.teacher_forced_losses(model, data) if self.objective == "ce" else 0.0 - f1_t
        return {"loss": loss, "f1": f1_t, "exact_match": torch.as_tensor(em, dtype=torch.float32)}

    def evaluate(self, model, data: QASet) -> dict[str, float]:
        # 0.0 + x: no "-0.0" in logs when every F1 is 0
        return {name: 0.0 + float(v.mean()) for name, v in self.per_example(model, data).items()}

    def shard(self, data: QASet, rank: int, world: int) -> tuple[QASet, torch.Tensor]:
        """This rank's generation (and teacher-forced) micro-batches, dealt round-robin."""
        prompts = data.prompts[rank::world]
        forced = data.forced[rank::world]
        rows = torch.cat([b.rows for b in prompts]) if prompts else torch.zeros(0, dtype=torch.long)
        return dataclasses.replace(data, prompts=prompts, forced=forced), rows
