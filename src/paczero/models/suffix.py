"""Scored positions only: the top blocks run on the positions the loss reads, the head on the option rows.

A classification loss reads the logits of the last ``logits_to_keep`` positions. Under trunk caching the top
blocks still ran every position, because the scored positions attend to the keys and values of the earlier
ones. When no trainable parameter feeds those keys and values (LoRA on the query, output or MLP projections
of the last block; not on its key/value projections, GPT-2's fused ``c_attn`` or its input norm), they never
change during training: :class:`PrefixKV` computes them once per micro-batch with the model's own code (a
forward over the prefix that fills a KV cache) and every later forward runs the top blocks on the scored
positions only, attending to that cache. Whether the prefix depends on a trainable parameter is read off
autograd the first time (does any cached key or value require grad?), so the rule holds for any adapter
placement and any Hugging Face decoder whose cache keeps one ``DynamicLayer`` per block.

:class:`RestrictedHead` makes the output embedding compute only the rows of the option tokens, which is
all that single-token label words read.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

logger = logging.getLogger(__name__)

__all__ = ["PrefixKV", "RestrictedHead", "RowsHead"]


class RowsHead(torch.nn.Module):
    """The rows ``rows`` of a linear output embedding: logits of those tokens only, in that order."""

    def __init__(self, head: torch.nn.Linear, rows: list[int]):
        super().__init__()
        index = torch.tensor(rows, device=head.weight.device)
        self.weight = torch.nn.Parameter(head.weight.detach()[index].clone(), requires_grad=False)
        bias = None if head.bias is None else head.bias.detach()[index].clone()
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)


class RestrictedHead:
    """Stands a :class:`RowsHead` in for ``model``'s linear output embedding while :meth:`active` is open."""

    def __init__(self, model: torch.nn.Module, rows: list[int]):
        self.full = model.get_output_embeddings()
        name = next(n for n, m in model.named_modules() if m is self.full)
        parent, _, self.leaf = name.rpartition(".")
        self.parent = model.get_submodule(parent)
        self.rows = RowsHead(self.full, rows)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        setattr(self.parent, self.leaf, self.rows)
        try:
            yield
        finally:
            setattr(self.parent, self.leaf, self.full)


def cache_argument(model: torch.nn.Module) -> str:
    """The name under which the model's forward takes a KV cache (``cache`` in transformers ≥ 5.x)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@contextlib.contextmanager
def _tracking(trainable: list[torch.nn.Parameter]) -> Iterator[None]:
    """Autograd on, with only the trainable parameters requiring grad (restored on exit)."""
    before = [p.requires_grad for p in trainable]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for p in trainable:
                p.requires_grad_(True)
            yield
    finally:
        for p, flag in zip(trainable, before, strict=True):
            p.requires_grad_(flag)


@dataclass
class _Prefix:
    """One micro-batch's KV cache over its prefix, and the pristine keys/values of the blocks that run."""

    ref: weakref.ref
    cache: Any
    saved: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class _Row:
    """One left-padded sequence of a micro-batch: its real tokens' bytes, its length and the batch width."""

    key: bytes
    length: int
    width: int


def _rows(ids: torch.Tensor, mask: torch.Tensor) -> list[_Row]:
    width = ids.shape[1]
    ids_cpu = ids.cpu()
    lengths = mask.sum(-1).tolist()
    return [_Row(ids_cpu[j, width - n :].numpy().tobytes(), n, width) for j, n in enumerate(lengths)]


RunTop = Callable[..., Any]  # (hidden entering the first block that runs, **model kwargs) -> model output


class PrefixKV:
    """Runs the top blocks ``first .. L − 1`` on the scored suffix of each micro-batch over a cached prefix.

    ``usable`` turns False (with ``reason``) the first time the prefix turns out to depend on a trainable
    parameter or the model's cache is not one ``DynamicLayer`` per block; the caller then runs every position.
    """

    def __init__(self, model: torch.nn.Module, first: int, trainable: list[torch.nn.Parameter]):
        self.model, self.first, self.trainable = model, first, trainable
        self.argument = cache_argument(model)
        self.usable = True
        self.reason = ""
        self._prefixes: dict[int, _Prefix] = {}
        # (sequence tokens, s) -> per block that runs, its real prefix positions' (keys, values): a new
        # micro-batch of known sequences (a public minibatch, a DP Poisson batch) is assembled from them
        self._rows: dict[tuple[bytes, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def _disable(self, reason: str) -> None:
        self.usable, self.reason = False, reason
        logger.info("scored positions only: off (%s); every position runs", reason)

    def _build(self, run_top: RunTop, hidden: torch.Tensor, inputs: dict[str, Any], s: int) -> _Prefix | None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(config=self.model.config)
        prefix = {k: None if v is None else v[:, :-s] for k, v in inputs.items()}
        with _tracking(self.trainable):
            run_top(
                hidden[:, :-s].clone(), **prefix, use_cache=True, logits_to_keep=1, **{self.argument: cache}
            )
        layers = getattr(cache, "layers", None)
        if layers is None or any(type(layer) is not DynamicLayer for layer in layers):
            self._disable("the model's KV cache is not one DynamicLayer per block")
            return None
        top = layers[self.first :]
        if any(layer.keys.requires_grad or layer.values.requires_grad for layer in top):
            self._disable("a trainable parameter feeds the keys or values of the earlier positions")
            return None
        for i in range(self.first):
            layers[i] = top[0]  # the mask is sized from block 0's cache; the stand-in blocks never update it
        saved = [(layer.keys.detach(), layer.values.detach()) for layer in top]
        return _Prefix(weakref.ref(inputs["input_ids"]), cache, saved)

    def _remember_rows(
        self, saved: list[tuple[torch.Tensor, torch.Tensor]], rows: list[_Row], s: int
    ) -> None:
        for j, row in enumerate(rows):
            real = slice(row.width - row.length, max(row.width - s, row.width - row.length))
            self._rows[row.key, s] = [(k[j, :, real], v[j, :, real]) for k, v in saved]

    def _assemble(self, ids: torch.Tensor, rows: list[_Row], s: int) -> _Prefix:
        """A micro-batch's prefix cache from its sequences' remembered rows (padding: zero, masked)."""
        from transformers import DynamicCache

        width = ids.shape[1] - s
        cache = DynamicCache(config=self.model.config)
        for t in range(len(self._rows[rows[0].key, s])):  # each block that runs
            kv = []
            for part in (0, 1):
                like = self._rows[rows[0].key, s][t][part]
                out = like.new_zeros((len(rows), like.shape[0], width, like.shape[-1]))
                for j, row in enumerate(rows):
                    stored = self._rows[row.key, s][t][part]
                    out[j, :, width - stored.shape[1] :] = stored
                kv.append(out)
            cache.update(kv[0], kv[1], self.first + t)
        layers = cache.layers
        for i in range(self.first):
            layers[i] = layers[self.first]
        saved = [(layer.keys, layer.values) for layer in layers[self.first :]]
        return _Prefix(weakref.ref(ids), cache, saved)

    def _prefix(
        self, run_top: RunTop, hidden: torch.Tensor, inputs: dict[str, Any], s: int
    ) -> _Prefix | None:
        ids = inputs["input_ids"]
        entry = self._prefixes.get(id(ids))
        if entry is None or entry.ref() is not ids:
            rows = _rows(ids, inputs["attention_mask"])
            if all((row.key, s) in self._rows for row in rows):
                entry = self._assemble(ids, rows, s)
            else:
                entry = self._build(run_top, hidden, inputs, s)
                if entry is None:
                    return None
                self._remember_rows(entry.saved, rows, s)
            key = id(ids)
            self._prefixes[key] = entry
            weakref.finalize(ids, self._prefixes.pop, key, None)
        return entry

    def __call__(self, run_top: RunTop, hidden: torch.Tensor, inputs: dict[str, Any], s: int) -> Any:
        """The model's output for the last ``s`` positions, or None when the prefix cannot be reused."""
        entry = self._prefix(run_top, hidden, inputs, s)
        if entry is None:
            return None
        for layer, (keys, values) in zip(entry.cache.layers[self.first :], entry.saved, strict=True):
            layer.keys, layer.values = keys, values  # the last forward appended its suffix: drop it
        suffix = {k: v if v is None or k == "attention_mask" else v[:, -s:] for k, v in inputs.items()}
        return run_top(
            hidden[:, -s:], **suffix, use_cache=True, logits_to_keep=s, **{self.argument: entry.cache}
        )
