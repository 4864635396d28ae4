"""Prompted classification with label words: per-example cross-entropy over the options, and accuracy.

When every label word is one token, all options are scored from the last position's logits in ONE forward
per example (``logits_to_keep=1``). Otherwise each (example, option) pair is one sequence scored by its
option's mean token log-probability. Sequences are tokenized once, sorted by length and left-padded per
micro-batch, so a step's two evaluations are nothing but forward passes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from paczero.tasks.custom import render, template_fields
from paczero.tasks.data import Example
from paczero.tasks.padding import left_pad_position_ids


@dataclass
class MicroBatch:
    rows: torch.Tensor  # which example each sequence belongs to (index into the set)
    options: torch.Tensor  # which option each sequence scores (multi-token path), else zeros
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    option_len: torch.Tensor  # tokens of the option at the end of each sequence (multi-token path)


@dataclass
class PreparedSet:
    """A tokenized example set, ready for repeated scoring."""

    size: int
    labels: torch.Tensor
    batches: list[MicroBatch]
    keep: int  # logits_to_keep


def mean_trailing_logprob(
    logits: torch.Tensor, input_ids: torch.Tensor, trailing: torch.Tensor
) -> torch.Tensor:
    """Mean log-probability of each row's last ``trailing[row]`` tokens (left padding puts them last).

    ``logits`` holds the last k positions (``logits_to_keep=k``), which predict the last k − 1 tokens.
    """
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = input_ids[:, -(logits.shape[1] - 1) :]
    tok = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    span = tok.shape[1]
    trailing = trailing.to(tok.device)
    in_span = torch.arange(span, device=tok.device).unsqueeze(0) >= (span - trailing).unsqueeze(1)
    return (tok * in_span).sum(-1) / trailing


def last_logits(model, batch, keep: int) -> torch.Tensor:
    """Logits of the last ``keep`` positions of a left-padded batch (one forward, no KV cache)."""
    return model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=keep,
        use_cache=False,
    ).logits


class Classifier:
    """Scores prompts against label words; the per-example objective of classification tasks.

    Label words with ``{field}`` placeholders are filled per example, so multiple-choice tasks (options
    that differ between examples, e.g. ``" {choice1}"``, ``" {choice2}"``) use the same scoring.
    """

    primary_metric = "accuracy"  # higher is better; what ``train.select_by: dev_accuracy`` reads
    metrics = ("accuracy",)
    reads_last_positions = True  # one forward without a KV cache, scored at the last positions only

    def __init__(
        self, tokenizer, prompt: str, label_words: list[str], micro_batch_size: int, max_length: int
    ):
        if len(label_words) < 2:
            raise ValueError("a classification task needs at least two label words")
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.micro_batch_size = micro_batch_size
        self.max_length = max_length
        self.label_words = label_words
        self.templated = any(template_fields(w) for w in label_words)
        self.option_ids = [] if self.templated else [self._encode_option(w) for w in label_words]
        self.single_token = not self.templated and all(len(ids) == 1 for ids in self.option_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def head_rows(self) -> list[int] | None:
        """The vocabulary rows the loss reads (single-token label words), else None (it reads them all)."""
        return [ids[0] for ids in self.option_ids] if self.single_token else None

    def _encode_option(self, word: str) -> list[int]:
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"label word {word!r} encodes to no tokens")
        return ids

    def _options(self, example: Example) -> list[list[int]]:
        if not self.templated:
            return self.option_ids
        return [self._encode_option(render(w, example)) for w in self.label_words]

    def _prompt_ids(self, example: Example, options: list[list[int]]) -> list[int]:
        ids = self.tokenizer(render(self.prompt, example)).input_ids
        budget = self.max_length - (0 if self.single_token else max(map(len, options)))
        return ids[-budget:]  # keep the end of the prompt, where the label is predicted

    def prepare(self, examples: list[Example], device: torch.device) -> PreparedSet:
        n_opt = len(self.label_words)
        for i, ex in enumerate(examples):
            if ex.label is None or not 0 <= ex.label < n_opt:
                raise ValueError(f"example {i} has label {ex.label!r}, outside 0..{n_opt - 1}")
        seqs: list[tuple[int, int, list[int], int]] = []  # (row, option, ids, option length)
        longest = 0
        for row, ex in enumerate(examples):
            options = self._options(ex)
            ids = self._prompt_ids(ex, options)
            longest = max(longest, *map(len, options))
            if self.single_token:
                seqs.append((row, 0, ids, 0))
            else:
                seqs.extend((row, c, ids + opt, len(opt)) for c, opt in enumerate(options))
        seqs.sort(key=lambda s: len(s[2]), reverse=True)
        batches = [
            self._collate(seqs[i : i + self.micro_batch_size], device)
            for i in range(0, len(seqs), self.micro_batch_size)
        ]
        keep = 1 if self.single_token else longest + 1
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        return PreparedSet(size=len(examples), labels=labels, batches=batches, keep=keep)

    def _collate(self, chunk, device: torch.device) -> MicroBatch:
        width = max(len(s[2]) for s in chunk)
        ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (_, _, seq, _) in enumerate(chunk):
            ids[j, width - len(seq) :] = torch.tensor(seq)
            mask[j, width - len(seq) :] = 1
        return MicroBatch(
            rows=torch.tensor([s[0] for s in chunk]),
            options=torch.tensor([s[1] for s in chunk]),
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=left_pad_position_ids(mask).to(device),
            option_len=torch.tensor([s[3] for s in chunk]),
        )

    @torch.inference_mode()
    def option_scores(self, model, data: PreparedSet) -> torch.Tensor:
        """Score of every option for every example, shape (n, C), float32 on CPU."""
        n_opt = len(self.label_words)
        scores = torch.zeros((data.size, n_opt), dtype=torch.float32)
        label_ids = self.head_rows
        if label_ids is not None and getattr(model, "head_rows", None) == label_ids:
            label_ids = list(range(n_opt))  # the model's head computed only these rows, in this order
        for mb in data.batches:
            logits = last_logits(model, mb, data.keep)
            if self.single_token:
                scores[mb.rows] = logits[:, -1, label_ids].float().cpu()
            else:
                scores[mb.rows, mb.options] = mean_trailing_logprob(logits, mb.input_ids, mb.option_len).cpu()
        return scores

    def losses(self, model, data: PreparedSet) -> torch.Tensor:
        """Per-example cross-entropy over the options' scores, shape (n,)."""
        return F.cross_entropy(self.option_scores(model, data), data.labels, reduction="none")

    def per_example(self, model, data: PreparedSet) -> dict[str, torch.Tensor]:
        """Loss and correctness of every example: the metrics are their means."""
        scores = self.option_scores(model, data)
        return {
            "loss": F.cross_entropy(scores, data.labels, reduction="none"),
            "accuracy": (scores.argmax(-1) == data.labels).float(),
        }

    def evaluate(self, model, data: PreparedSet) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_example(model, data).items()}

    def shard(self, data: PreparedSet, rank: int, world: int) -> tuple[PreparedSet, torch.Tensor]:
        """This rank's micro-batches (dealt round-robin, so padding never depends on the world size)."""
        mine = data.batches[rank::world]
        rows = torch.cat([mb.rows for mb in mine]) if mine else torch.zeros(0, dtype=torch.long)
        return dataclasses.replace(data, batches=mine), rows
