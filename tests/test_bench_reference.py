"""The published code's scoring as bench times it: same losses as ours, one call per label word, width % 8."""

import torch

from paczero.bench.reference import PublishedClassifier
from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.tasks.config import TaskConfig
from paczero.tasks.data import synthetic_sentiment
from paczero.tasks.registry import build_objective


def test_published_scoring_equals_ours_in_one_call_per_label_word_padded_to_multiples_of_8():
    loaded = load_model(ModelConfig(name="tiny-llama"))
    task = TaskConfig(name="synthetic-sentiment")
    examples = synthetic_sentiment(19, 4)
    ours = build_objective(task, loaded.tokenizer, 5)
    theirs = PublishedClassifier(loaded.tokenizer, task.prompt, task.label_words, 19, task.max_length)
    data = theirs.prepare(examples, torch.device("cpu"))
    assert [len(mb.rows) for mb in data.batches] == [19, 19] and data.keep == 0
    assert all(mb.input_ids.shape[1] % 8 == 0 for mb in data.batches)
    assert all(set(mb.options.tolist()) == {c} for c, mb in enumerate(data.batches))
    ref = ours.losses(loaded.model, ours.prepare(examples, torch.device("cpu")))
    torch.testing.assert_close(theirs.losses(loaded.model, data), ref, atol=1e-5, rtol=0)
    split = PublishedClassifier(loaded.tokenizer, task.prompt, task.label_words, 8, task.max_length)
    assert [len(mb.rows) for mb in split.prepare(examples, torch.device("cpu")).batches] == [8, 8, 3] * 2
