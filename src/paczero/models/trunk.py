"""Exact frozen-trunk caching: run only the top k transformer blocks when nothing below them is trained.

When every trainable parameter lies in blocks ``L − k .. L − 1`` of a decoder whose blocks sit in one
``torch.nn.ModuleList`` (Llama, OPT, GPT-2, Qwen, ...), the hidden states entering block ``L − k`` never
change during training. :class:`TrunkCachedModel` computes them once per sequence (the first time a sequence
is scored, with the same micro-batch shape as the uncached forward) and afterwards runs the model with the
bottom blocks replaced by pass-throughs and those hidden states substituted at the input of block ``L − k``.
Everything else (embeddings, attention masks, rotary or absolute positions, the final norm, the head) runs
through the model's own code, so the cached forward is the uncached one minus the frozen blocks.

Memory: the cache holds ``Σ_sequences width × hidden × bytes`` (real tokens; the padded micro-batch a
sequence was first seen in); :class:`TrunkCache` refuses to grow past ``model.trunk_cache_gib``.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from paczero.models.suffix import PrefixKV, RestrictedHead

logger = logging.getLogger(__name__)

__all__ = [
    "TrunkCache",
    "TrunkCachedModel",
    "TrunkError",
    "find_blocks",
    "forward_model",
    "shared_cache",
    "trainable_top_layers",
]

GIB = 2**30


class TrunkError(ValueError):
    """Trunk caching was asked for but cannot be exact for this model, track or task."""


class _Captured(Exception):
    """Raised by the capture hook to stop a forward once the trunk's output is known."""


def find_blocks(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The decoder's block list: the one ModuleList of ``num_hidden_layers`` modules of a single class."""
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None)
    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.ModuleList)
        and len(mod) > 0
        and (n_layers is None or len(mod) == n_layers)
        and len({type(m) for m in mod}) == 1
    ]
    if n_layers is None or len(found) != 1:
        raise TrunkError(
            f"cannot locate the transformer blocks of {type(model).__name__} (expected exactly one "
            f"ModuleList of config.num_hidden_layers={n_layers} identical blocks, found "
            f"{[n for n, _ in found]}); "
            "set model.cache_trunk: false"
        )
    return found[0]


def trainable_top_layers(model: torch.nn.Module, trainable: list[torch.nn.Parameter]) -> int | None:
    """k such that every trainable parameter lies in the top k blocks; None if one lies outside them."""
    _, blocks = find_blocks(model)
    owner = {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}
    indices = [owner.get(id(p)) for p in trainable]
    if not indices or any(i is None for i in indices):
        return None
    return len(blocks) - min(indices)


def _hidden_arg(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


class _PassThrough(torch.nn.Module):
    """Stands in for a frozen block during a cached forward: returns its input in the block's output form."""

    def __init__(self, tuple_len: int):
        super().__init__()
        self.tuple_len = tuple_len  # 0: the block returns a tensor; else the length of the tuple it returns

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden = _hidden_arg(args, kwargs)
        return (hidden, *([None] * (self.tuple_len - 1))) if self.tuple_len else hidden


@dataclass
class _Entry:
    """The cached trunk output of one micro-batch (kept while its input_ids tensor lives)."""

    ref: weakref.ref
    hidden: torch.Tensor


class TrunkCache:
    """Trunk outputs per sequence (token bytes → real-token hidden states), with a memory cap."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.tuple_len: int | None = None  # the frozen blocks' output form, learnt at the first capture
        self.rows: dict[bytes, torch.Tensor] = {}  # views into the computed batches
        self._storages: dict[int, int] = {}  # storage data_ptr -> bytes (what the views keep alive)

    def nbytes(self) -> int:
        """Bytes the cache keeps alive."""
        return sum(self._storages.values())

    def add(self, keys: list[bytes], hidden: torch.Tensor, lengths: list[int]) -> None:
        """Remember each row's real-token slice of ``hidden`` (left-padded, width W)."""
        size = hidden.untyped_storage().nbytes()
        if self.nbytes() + size > self.max_bytes:
            raise TrunkError(
                f"the trunk cache would hold {(self.nbytes() + size) / GIB:.2f} GiB, over "
                f"model.trunk_cache_gib={self.max_bytes / GIB:g} (it needs sequences × tokens × hidden × "
                "bytes); raise the cap, shrink the data, or set model.cache_trunk: false"
            )
        self._storages[hidden.untyped_storage().data_ptr()] = size
        width = hidden.shape[1]
        for j, (key, n) in enumerate(zip(keys, lengths, strict=True)):
            self.rows[key] = hidden[j, width - n :]


_SHARED: weakref.WeakKeyDictionary[torch.nn.Module, dict[int, TrunkCache]] = weakref.WeakKeyDictionary()


def shared_cache(model: torch.nn.Module, first: int, max_bytes: int) -> TrunkCache:
    """The one trunk cache of ``model`` cut at block ``first``: every trainer, evaluation and audit shadow run
    over the same loaded model reads it, since its frozen trunk gives a sequence the same hidden states."""
    return _SHARED.setdefault(model, {}).setdefault(first, TrunkCache(max_bytes))


class TrunkCachedModel:
    """Calls like the model (``input_ids``, ``attention_mask``, ``position_ids``, ...) but runs only the top k
    blocks, on trunk outputs cached per sequence. Left-padded batches only (what the objectives build).

    With ``trainable`` given, the top blocks run only the scored positions where that is exact
    (:class:`~paczero.models.suffix.PrefixKV`); with ``head_rows``, a linear head computes only those
    vocabulary rows, and the logits' last dimension follows ``head_rows`` (read it off the attribute).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        k: int,
        max_bytes: int,
        trainable: list[torch.nn.Parameter] | None = None,
        head_rows: list[int] | None = None,
    ):
        name, blocks = find_blocks(model)
        if not 1 <= k < len(blocks):
            raise TrunkError(f"trunk caching needs 1 <= k < {len(blocks)} trainable top blocks, got k={k}")
        self.model, self.blocks, self.k = model, blocks, k
        self.first = len(blocks) - k  # index of the first block that runs
        self.cache = shared_cache(model, self.first, max_bytes)
        self._batches: dict[int, _Entry] = {}  # id(input_ids) -> assembled trunk output of that micro-batch
        self.prefix = None if trainable is None else PrefixKV(model, self.first, trainable)
        linear_head = isinstance(model.get_output_embeddings(), torch.nn.Linear)
        self.head = RestrictedHead(model, head_rows) if head_rows and linear_head else None
        self.head_rows = head_rows if self.head is not None else None
        logger.info("trunk cache: running blocks %d..%d of %s", self.first, len(blocks) - 1, name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)  # config, device, ...: whatever callers read off the model

    # -- computing the trunk -----------------------------------------------------------------------------

    def _capture(self, **inputs: Any) -> torch.Tensor:
        """Hidden states entering block ``first`` (the forward stops there)."""
        seen: dict[str, Any] = {}

        def grab(_m: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            seen["hidden"] = _hidden_arg(args, kwargs)
            raise _Captured

        def form(_m: torch.nn.Module, _args: tuple, output: Any) -> None:
            seen["tuple_len"] = len(output) if isinstance(output, tuple) else 0

        handles = [
            self.blocks[self.first].register_forward_pre_hook(grab, with_kwargs=True),
            self.blocks[self.first - 1].register_forward_hook(form),
        ]
        try:
            self.model(**inputs)
        except _Captured:
            pass
        finally:
            for h in handles:
                h.remove()
        if "hidden" not in seen:
            raise TrunkError(f"block {self.first} of {type(self.model).__name__} was never called")
        self.cache.tuple_len = seen["tuple_len"]
        return seen["hidden"]

    def _trunk(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: Any
    ) -> torch.Tensor:
        """Trunk output of a left-padded micro-batch, from the cache where every sequence is known."""
        entry = self._batches.get(id(input_ids))
        if entry is not None and entry.ref() is input_ids:
            return entry.hidden
        if bool((attention_mask[:, -1] == 0).any()):
            raise TrunkError("trunk caching needs left-padded batches (a row ends with padding)")
        lengths = attention_mask.sum(-1).tolist()
        width = input_ids.shape[1]
        ids_cpu = input_ids.cpu()
        keys = [ids_cpu[j, width - n :].numpy().tobytes() for j, n in enumerate(lengths)]
        missing = [j for j, key in enumerate(keys) if key not in self.cache.rows]
        if len(missing) == len(keys):  # a new micro-batch: computed as the uncached forward would
            hidden = self._capture(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            )
            self.cache.add(keys, hidden, lengths)
        else:
            if missing:
                rows = torch.tensor(missing, device=input_ids.device)
                part = self._capture(
                    input_ids=input_ids[rows],
                    attention_mask=attention_mask[rows],
                    position_ids=None if position_ids is None else position_ids[rows],
                    use_cache=False,
                )
                self.cache.add([keys[j] for j in missing], part, [lengths[j] for j in missing])
            first = self.cache.rows[keys[0]]
            hidden = first.new_zeros((len(keys), width, first.shape[-1]))  # pads: zeros (masked out)
            for j, (key, n) in enumerate(zip(keys, lengths, strict=True)):
                hidden[j, width - n :] = self.cache.rows[key]
        self._remember(input_ids, hidden)
        return hidden

    def _remember(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> None:
        key = id(input_ids)
        self._batches[key] = _Entry(weakref.ref(input_ids), hidden)
        weakref.finalize(input_ids, self._batches.pop, key, None)

    # -- running the top blocks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _top_only(self, hidden: torch.Tensor) -> Iterator[None]:
        """Bottom blocks replaced by pass-throughs; ``hidden`` substituted at the input of block ``first``."""

        def substitute(_m: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
            incoming = _hidden_arg(args, kwargs)
            if incoming.shape != hidden.shape:
                raise TrunkError(f"cached trunk {tuple(hidden.shape)} vs block input {tuple(incoming.shape)}")
            cached = hidden.to(incoming.device)
            if cached.is_inference() and not torch.is_inference_mode_enabled():
                cached = cached.clone()  # a forward that records autograd cannot save inference tensors
            if args:
                return (cached, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": cached}

        slots = self.blocks._modules  # the list's own slots: swapping there skips nn.Module's per-item checks
        frozen = {key: slots[key] for key in list(slots)[: self.first]}
        stand_in = _PassThrough(self.cache.tuple_len or 0)
        handle = self.blocks[self.first].register_forward_pre_hook(substitute, with_kwargs=True)
        try:
            slots.update(dict.fromkeys(frozen, stand_in))
            yield
        finally:
            slots.update(frozen)
            handle.remove()

    def _run_top(self, hidden: torch.Tensor, **inputs: Any) -> Any:
        with self._top_only(hidden):
            return self.model(**inputs)

    def _suffix_applies(self, input_ids: torch.Tensor, kwargs: dict[str, Any]) -> bool:
        s = kwargs.get("logits_to_keep") or 0
        plain = set(kwargs) <= {"position_ids", "logits_to_keep", "use_cache"}
        return self.prefix is not None and self.prefix.usable and plain and 0 < s < input_ids.shape[1]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        """The model's output (logits of the kept positions), computed through the top k blocks only."""
        if kwargs.get("use_cache"):
            raise TrunkError("trunk caching runs without a KV cache (use_cache=False)")
        hidden = self._trunk(input_ids, attention_mask, kwargs.get("position_ids"))
        head = self.head.active() if self.head is not None else contextlib.nullcontext()
        with head:
            if self._suffix_applies(input_ids, kwargs):
                inputs = {
                    "input_ids": input_ids,
                    "attention_mask": attention_mask,
                    "position_ids": kwargs.get("position_ids"),
                }
                out = self.prefix(self._run_top, hidden, inputs, kwargs["logits_to_keep"])
                if out is not None:
                    return out
            return self._run_top(hidden, input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def forward_model(loaded: Any, objective: Any, cfg: Any = None) -> Any:
    """What the objective should call: a :class:`TrunkCachedModel` when ``model.cache_trunk`` allows and
    applies (the loss reads fixed last positions, every trainable parameter in the top k < L blocks), else the
    model itself. The cached model runs only the scored positions and option rows where that is exact.

    ``cfg`` is the run's :class:`~paczero.models.config.ModelConfig` (default: the one the model was loaded
    with).
    """
    cfg = cfg if cfg is not None else loaded.config
    if cfg.cache_trunk is False:
        return loaded.model
    reasons = []
    if not objective.reads_last_positions:
        reasons.append(
            "the task's loss does not read fixed last positions (generation decodes with a KV cache)"
        )
    if cfg.device_map is not None:
        reasons.append("the model is spread over devices (model.device_map)")
    try:
        k = trainable_top_layers(loaded.model, [p for _, p in loaded.trainable])
    except TrunkError as err:
        k, reasons = None, [*reasons, str(err)]
    else:
        n_blocks = len(find_blocks(loaded.model)[1])
        if k is None or k >= n_blocks:
            reasons.append(
                "not every trainable parameter is in the top k < L blocks "
                "(set model.lora_layers, or model.full_layers on the full track)"
            )
    if reasons:
        if cfg.cache_trunk:
            raise TrunkError("model.cache_trunk: true, but " + "; ".join(reasons))
        return loaded.model
    trainable = [p for _, p in loaded.trainable]
    return TrunkCachedModel(loaded.model, k, int(cfg.trunk_cache_gib * GIB), trainable, objective.head_rows)
