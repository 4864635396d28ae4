"""Shared fixtures: tiny runs on the synthetic sentiment task."""

import pytest
import torch

from paczero.config import load_config

# Tiny models gain nothing from intra-op threads, and thread spinning on a busy 2-core CI machine
# slows them down twenty-fold.
torch.set_num_threads(1)

TINY = [
    "task.name=synthetic-sentiment",
    "task.pool_size=128",
    "task.dev_size=64",
    "task.test_size=64",
    "model.name=tiny-opt",
    "model.track=lora",
    "train.eval_every=50",
    "train.clip=null",
    "train.progress=false",
    "privacy.subsets=16",
    # deterministic privacy randomness, so that tests are repeatable: NOT private (tests only)
    "privacy.secure=false",
    "privacy.seed=0",
]


# A short secure run (OS privacy randomness, as a user's run): 32 pool examples, M = 8, 4 steps.
SECURE_RUN = [
    "task.name=synthetic-sentiment",
    "task.pool_size=32",
    "task.dev_size=16",
    "task.test_size=16",
    "model.name=tiny-opt",
    "train.steps=4",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.progress=false",
    "privacy.subsets=8",
]


def tiny_config(*overrides: str):
    """A run config on the synthetic task and the tiny OPT model, with extra overrides."""
    return load_config(None, [*TINY, *overrides])


@pytest.fixture
def make_config():
    return tiny_config
