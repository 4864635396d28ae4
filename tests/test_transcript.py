"""The transcript as the model: replay from θ_0 reproduces the trained weights bitwise, and a changed,
reordered or cut transcript is refused; the budget guard stops a run cleanly with weights that match its
transcript."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from paczero.cli import main
from paczero.models.loaders import trainable_state
from paczero.privacy.ledger import BudgetExceeded
from paczero.trainer import Trainer
from paczero.transcript import TranscriptError, read_transcript, replay

SMALL = ["task.pool_size=32", "task.dev_size=16", "task.test_size=16", "train.eval_every=3"]


def trained(make_config, tmp_path, *overrides):
    run_dir = tmp_path / "run"
    trainer = Trainer(make_config(*SMALL, *overrides), run_dir)
    summary = trainer.run()
    return trainer, summary, run_dir


def equal_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "overrides",
    [
        ["privacy.mechanism=paczero-mi", "privacy.budget=0.2", "train.lr=3.0e-2", "train.directions=2"],
        ["privacy.mechanism=paczero-zpl", "train.lr=1.0e-3", "model.track=full"],
        ["privacy.mechanism=dpzero", "privacy.epsilon=2.0", "privacy.sampling_rate=0.5", "train.clip=5"],
    ],
    ids=["mi-lora-k2", "zpl-full", "dpzero"],
)
def test_replay_reproduces_the_trained_weights_bitwise(make_config, tmp_path, overrides):
    trainer, summary, run_dir = trained(make_config, tmp_path, *overrides, "train.steps=8")
    loaded, result = replay(run_dir)
    assert result.steps == summary["selected_step"] and result.records == 8
    assert equal_weights(trainable_state(loaded), trainable_state(trainer.loaded))
    last, _ = replay(run_dir, step=8)  # and every step is reachable: the last one differs from θ_0
    first, _ = replay(run_dir, step=0)
    assert not equal_weights(trainable_state(last), trainable_state(first))
    size = (run_dir / "steps.jsonl").stat().st_size
    print(f"{overrides[0]}: transcript of 8 steps = {size} bytes replays {loaded.num_trainable()} weights")


def test_replay_cli_writes_the_model_and_a_bundle_replays_the_same(make_config, tmp_path, capsys):
    trainer, _, run_dir = trained(make_config, tmp_path, "train.steps=6", "train.lr=3.0e-2")
    bundle = tmp_path / "bundle"
    export = [
        "export",
        "--run",
        str(run_dir),
        "--output",
        str(bundle),
        "--transcript-only",
        "--allow-insecure",
    ]
    assert main(export) == 0
    assert not (bundle / "model").exists() and not (bundle / "secret.json").exists()
    out = tmp_path / "replayed"
    assert main(["replay", "--transcript", str(bundle), "--base", "tiny-opt", "--output-dir", str(out)]) == 0
    assert "replayed" in capsys.readouterr().out
    from safetensors.torch import load_file

    got = load_file(str(out / "model" / "adapter_model.safetensors"))
    want = load_file(str(run_dir / "model" / "adapter_model.safetensors"))
    assert equal_weights(got, want)


def tamper_cases():
    def flip_bit(lines):
        raw = bytearray(lines[2].encode())
        raw[len(raw) // 2] ^= 0x01
        lines[2] = raw.decode(errors="replace")

    def change_update(lines):
        record = json.loads(lines[3])
        record["update"] = [-v for v in record["update"]]
        lines[3] = json.dumps(record)

    return {
        "flipped bit": (flip_bit, "line 3|line 4"),
        "changed release": (change_update, "line 5|line 4"),
        "reordered": (lambda lines: lines.insert(1, lines.pop(2)), "line 2"),
        "last line cut": (lambda lines: lines.pop(), "truncated"),
        "first line cut": (lambda lines: lines.pop(0), "line 1"),
        "line duplicated": (lambda lines: lines.append(lines[-1]), "line 7"),
    }


@pytest.mark.parametrize("case", list(tamper_cases()))
def test_a_tampered_transcript_is_refused(make_config, tmp_path, case):
    _, _, run_dir = trained(make_config, tmp_path, "train.steps=6", "train.eval_every=0")
    path = run_dir / "steps.jsonl"
    lines = path.read_text().splitlines()
    change, message = tamper_cases()[case]
    change(lines)
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(TranscriptError, match=message):
        replay(run_dir)


def test_a_cut_mid_line_a_changed_head_or_another_config_is_refused(make_config, tmp_path):
    _, _, run_dir = trained(make_config, tmp_path, "train.steps=4", "train.eval_every=0")
    pristine = tmp_path / "pristine"
    shutil.copytree(run_dir, pristine)
    path = run_dir / "steps.jsonl"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(TranscriptError, match="partial line"):
        replay(run_dir)
    shutil.copy(pristine / "steps.jsonl", path)
    head = json.loads((run_dir / "transcript.json").read_text())
    (run_dir / "transcript.json").write_text(json.dumps({**head, "head": "0" * 64}))
    with pytest.raises(TranscriptError, match="different heads|truncated"):
        replay(run_dir)
    shutil.copy(pristine / "transcript.json", run_dir / "transcript.json")
    from paczero.rundir import public_run_config

    cfg = public_run_config(run_dir).to_dict()
    assert len(read_transcript(run_dir, cfg)) == 4
    cfg["train"]["lr"] = 0.5
    with pytest.raises(TranscriptError, match="genesis"):
        read_transcript(run_dir, cfg)


def test_budget_guard_refuses_an_overcharging_release_and_stops_cleanly(make_config, tmp_path):
    """A faulty mechanism reports a cost past the budget mid-step: the ledger refuses it before counting, the
    step is dropped whole, and the weights equal the replay of the transcript that was written."""
    trainer = Trainer(
        make_config(
            *SMALL,
            "privacy.mechanism=paczero-mi",
            "privacy.budget=0.2",
            "train.directions=2",
            "train.steps=8",
            "train.lr=3.0e-2",
        ),
        tmp_path / "run",
    )
    release = trainer.mechanism.release
    calls = []

    def overcharging(step, ledger):
        out = release(step, ledger)
        calls.append(1)
        if len(calls) == 7:  # the first direction of step 4
            out.cost = ledger.budget  # together with what is already spent: past the bound
        return out

    trainer.mechanism.release = overcharging
    summary = trainer.run()
    assert summary["stop_reason"] == "budget exhausted" and summary["steps_run"] == 3
    privacy = summary["privacy"]
    assert privacy["mi_spent"] <= privacy["mi_budget"] == 0.2
    assert privacy["releases"] == 6  # the refused step's releases are not counted
    assert privacy["mi_spent"] == pytest.approx(sum(r.mi_step for r in trainer.records), rel=1e-12)
    with pytest.raises(BudgetExceeded, match="past the budget"):
        from paczero.mechanisms.base import Release

        trainer.ledger.charge(Release(value=1.0, observed=1.0, kind="noisy", cost=1.0))
    from safetensors.torch import load_file

    final = max((tmp_path / "run" / "checkpoints").iterdir())  # saved at exit, before best-dev selection
    loaded, _ = replay(tmp_path / "run", step=3)
    assert equal_weights(trainable_state(loaded), load_file(str(final / "weights.safetensors")))
    assert json.loads((final / "state.json").read_text())["ledger"]["spent"] == privacy["mi_spent"]
