"""Prompted classification with label words: per-example cross-entropy over the options, and accuracy.

When every label word is one token, all options are scored from the last position's logits in ONE forward
per example (``logits_to_keep=1``). Otherwise each (example, option) pair is one sequence scored by its
option's mean token log-probability. Sequences are tokenized once, sorted by length and left-padded per
micro-batch, so a step's two evaluations are nothing but forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from paczero.models import left_pad_position_ids
from paczero.tasks.data import Example


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


class Classifier:
    """Scores prompts against label words; the per-example objective of classification tasks."""

    def __init__(
        self, tokenizer, prompt: str, label_words: list[str], micro_batch_size: int, max_length: int
    ):
        if len(label_words) < 2:
            raise ValueError("a classification task needs at least two label words")
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.micro_batch_size = micro_batch_size
        self.max_length = max_length
        self.option_ids = [tokenizer(w, add_special_tokens=False).input_ids for w in label_words]
        for word, ids in zip(label_words, self.option_ids, strict=True):
            if not ids:
                raise ValueError(f"label word {word!r} encodes to no tokens")
        self.single_token = all(len(ids) == 1 for ids in self.option_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _prompt_ids(self, example: Example) -> list[int]:
        try:
            text = self.prompt.format(**example.fields)
        except KeyError as err:
            raise ValueError(f"prompt template uses {err} which the example does not have") from None
        ids = self.tokenizer(text).input_ids
        budget = self.max_length - (0 if self.single_token else max(map(len, self.option_ids)))
        return ids[-budget:]  # keep the end of the prompt, where the label is predicted

    def prepare(self, examples: list[Example], device: torch.device) -> PreparedSet:
        for i, ex in enumerate(examples):
            if ex.label is None or not 0 <= ex.label < len(self.option_ids):
                raise ValueError(f"example {i} has label {ex.label!r}, outside 0..{len(self.option_ids) - 1}")
        seqs: list[tuple[int, int, list[int], int]] = []  # (row, option, ids, option length)
        for row, ex in enumerate(examples):
            ids = self._prompt_ids(ex)
            if self.single_token:
                seqs.append((row, 0, ids, 0))
            else:
                seqs.extend((row, c, ids + opt, len(opt)) for c, opt in enumerate(self.option_ids))
        seqs.sort(key=lambda s: len(s[2]), reverse=True)
        batches = [
            self._collate(seqs[i : i + self.micro_batch_size], device)
            for i in range(0, len(seqs), self.micro_batch_size)
        ]
        keep = 1 if self.single_token else max(map(len, self.option_ids)) + 1
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
        n_opt = len(self.option_ids)
        scores = torch.zeros((data.size, n_opt), dtype=torch.float32)
        label_ids = [ids[0] for ids in self.option_ids]
        for mb in data.batches:
            logits = model(
                input_ids=mb.input_ids,
                attention_mask=mb.attention_mask,
                position_ids=mb.position_ids,
                logits_to_keep=data.keep,
                use_cache=False,
            ).logits
            if self.single_token:
                scores[mb.rows] = logits[:, -1, label_ids].float().cpu()
            else:
                scores[mb.rows, mb.options] = self._mean_option_logprob(logits, mb).cpu()
        return scores

    def _mean_option_logprob(self, logits: torch.Tensor, mb: MicroBatch) -> torch.Tensor:
        """Mean log-probability of each sequence's trailing option tokens (left padding puts them last)."""
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # predicts the last keep−1 tokens
        targets = mb.input_ids[:, -(logits.shape[1] - 1) :]
        tok = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        span = tok.shape[1]
        positions = torch.arange(span, device=tok.device)
        in_option = positions.unsqueeze(0) >= (span - mb.option_len.to(tok.device)).unsqueeze(1)
        return (tok * in_option).sum(-1) / mb.option_len.to(tok.device)

    def losses(self, model, data: PreparedSet) -> torch.Tensor:
        """Per-example cross-entropy over the options' scores, shape (n,)."""
        return F.cross_entropy(self.option_scores(model, data), data.labels, reduction="none")

    def evaluate(self, model, data: PreparedSet) -> dict[str, float]:
        scores = self.option_scores(model, data)
        loss = F.cross_entropy(scores, data.labels)
        accuracy = (scores.argmax(-1) == data.labels).float().mean()
        return {"loss": float(loss), "accuracy": float(accuracy)}
