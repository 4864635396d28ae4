"""Models placed with an accelerate device map (one replica over several devices) take ZO steps unchanged.

Only CPU exists here, so the map places every layer on the CPU; on several GPUs the same path spreads the
layers over them, and `Directions` regenerates each tensor's direction on that tensor's own device.
"""

import pytest
import torch

from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model, save_model
from paczero.tasks.config import TaskConfig
from paczero.tasks.registry import build_objective, load_splits
from paczero.zo import Directions, two_point_estimate


@pytest.mark.parametrize("track", ["lora", "full"])
def test_a_device_mapped_model_scores_and_steps_like_the_plain_one(tmp_path, track):
    save_model(load_model(ModelConfig(name="tiny-llama", track="full")), tmp_path / "base")
    plain = load_model(ModelConfig(name=str(tmp_path / "base"), track=track))
    mapped = load_model(ModelConfig(name=str(tmp_path / "base"), track=track, device_map="auto"))
    assert mapped.config.device_map == "auto"
    task = TaskConfig(name="synthetic-sentiment", pool_size=16, dev_size=0, test_size=0)
    results = []
    for loaded in (plain, mapped):
        obj = build_objective(task, loaded.tokenizer, 8)
        data = obj.prepare(load_splits(task).pool, loaded.device)
        d = Directions([p for _, p in loaded.trainable])
        d.apply([(5, 1e-3)])
        plus = obj.losses(loaded.model, data)
        d.apply([(5, -2e-3)])
        est = two_point_estimate(plus, obj.losses(loaded.model, data), 1e-3)
        d.apply([(5, 1e-3 - 0.1 * float(est.g.mean()))])
        results.append((est.g, [p.detach().clone() for _, p in loaded.trainable]))
    assert results[0][0].tolist() == pytest.approx(results[1][0].tolist(), abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(results[0][1], results[1][1]))
