"""Best-dev selection: the key follows train.select_by, the best state is kept, a tie goes to the end."""

from __future__ import annotations

import torch

from paczero.selection import DevSelection


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor([value])}


def test_selection_keeps_the_best_state_by_the_configured_metric():
    by_loss = DevSelection.start("dev_loss", {"step": 0, "loss": 1.0, "accuracy": 0.5}, weights(0))
    by_accuracy = DevSelection.start("dev_accuracy", {"step": 0, "loss": 1.0, "accuracy": 0.5}, weights(0))
    for step, loss, accuracy in [(2, 0.8, 0.4), (4, 0.9, 0.7)]:
        for selection in (by_loss, by_accuracy):
            selection.observe({"step": step, "loss": loss, "accuracy": accuracy}, lambda s=step: weights(s))
    assert (by_loss.best.step, by_loss.best.weights["w"].item()) == (2, 2.0)
    assert (by_accuracy.best.step, by_accuracy.best.weights["w"].item()) == (4, 4.0)
    assert by_loss.selected_step(final=4) == 2  # step 4 is worse on dev loss than step 2
    assert by_accuracy.selected_step(final=4) == 4  # the final state is the best


def test_a_tie_or_no_dev_data_selects_the_final_state_and_state_round_trips():
    tie = DevSelection.start("dev_loss", {"step": 0, "loss": 1.0}, weights(0))
    tie.observe({"step": 3, "loss": 1.0}, lambda: weights(3))  # not better: the step-0 state stays best
    assert tie.best.step == 0 and tie.selected_step(final=3) == 3
    blind = DevSelection.start("dev_loss", {"step": 0}, weights(0))  # no dev set: every key is 0
    assert blind.selected_step(final=5) == 5
    again = DevSelection.from_state("dev_loss", tie.to_state(), weights(0))
    assert again.to_state() == tie.to_state() and again.best.weights["w"].item() == 0.0
