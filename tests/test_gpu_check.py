"""benchmarks/gpu_check.py: the dry run goes through every phase on the CPU and writes the results file the
docs quote; the resume check flags a changed line; the time budget stops phases and still writes results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
PHASES = ["correctness", "resume", "opt-1.3b", "smollm2-135m", "opt-6.7b"]
MECHANISMS = ["paczero-zpl", "paczero-mi", "mezo", "dpzero"]


def run_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-check") / "gpu-check.json"
    done = run_script("--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.with_suffix(".md").is_file()
    return json.loads(out.read_text())


def test_dry_run_runs_every_phase_in_order(dry_run):
    assert dry_run["phase_order"] == PHASES
    assert [dry_run["phases"][p]["status"] for p in PHASES] == ["ok"] * len(PHASES)
    assert not any(dry_run["phases"][p]["result"].get("errors") for p in PHASES)
    assert dry_run["elapsed_s"] < dry_run["budget_s"]
    assert dry_run["machine"]["torch"]
    assert any("testing only" in note for note in dry_run["notes"])


def test_correctness_compares_transcripts_and_privacy_for_every_mechanism(dry_run):
    r = dry_run["phases"]["correctness"]["result"]
    assert list(r["mechanisms"]) == MECHANISMS
    for variants in r["mechanisms"].values():
        assert set(variants) == {"cpu", "cpu+cpu-z"}
        for c in variants.values():  # CPU against CPU: identical, which is what the phase must show
            assert c["steps"][0] == c["steps"][1] == c["identical_steps"] > 0
            assert c["first_difference_step"] is None
            assert c["privacy_md_identical"] and c["privacy_block_identical"]


def test_resume_check_passes_and_its_negative_control_is_detected(dry_run):
    r = dry_run["phases"]["resume"]["result"]
    assert r["passed"]
    for run in r["runs"].values():
        assert run["killed_by_sigkill"] and run["resume_exit_code"] == 0
        assert run["lines_before_kill"] == run["byte_identical"] > 0
        assert run["negative_control"]["detected"]


def test_paper_scale_cells_have_the_quoted_fields(dry_run):
    for phase in ("opt-1.3b", "opt-6.7b"):
        r = dry_run["phases"][phase]["result"]
        assert r["micro_batch_size"] == "auto" and r["parameters"] > 0
        for cell in r["cells"]:
            assert cell["status"] == "ok"
            assert isinstance(cell["micro_batch_size"], int) and cell["micro_batch_size"] >= 1
            step = cell["steps"]["paczero-zpl"]
            assert step["step_s"] > 0 and step["step_over_two_forwards"] > 0
            assert cell["memory"]["step_peak_gib"] > 0 and cell["memory"]["step_over_inference"] > 0
    runs = dry_run["phases"]["smollm2-135m"]["result"]["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert all(r["replication_train_s_per_run"] > 0 for r in runs)


def test_compare_prefix_flags_a_changed_pre_kill_line():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check_correct import compare_prefix, tamper

    lines = [json.dumps({"step": i, "released": [1.0], "prev_hash": f"h{i}"}) for i in range(1, 6)]
    resumed = [*lines, json.dumps({"step": 6, "released": [-1.0], "prev_hash": "h6"})]
    ok = compare_prefix(lines, resumed)
    assert ok["passed"] and ok["byte_identical"] == 5
    bad = compare_prefix(tamper(lines, 3), resumed)
    assert not bad["passed"] and bad["differing"] == [{"step": 4, "fields": ["released"]}]
    assert not compare_prefix(lines, lines[:4])["passed"]  # a pre-kill line missing after resume


def test_a_spent_budget_skips_phases_and_still_writes_results(tmp_path):
    out = tmp_path / "r.json"
    done = run_script("--dry-run", "--budget", "0", "--out", str(out), timeout=60)
    assert done.returncode == 1
    results = json.loads(out.read_text())
    assert {p["status"] for p in results["phases"].values()} == {"skipped"}
    assert "skipped" in out.with_suffix(".md").read_text()


def test_an_isolated_phase_past_its_limit_is_killed_and_recorded(tmp_path):
    out = tmp_path / "r.json"
    done = run_script("--dry-run", "--isolate", "--phases", "correctness", "--budget", "2", "--out", str(out))
    assert done.returncode == 1
    entry = json.loads(out.read_text())["phases"]["correctness"]
    assert entry["status"] == "timeout" and entry["seconds"] < 30


def test_a_failing_measurement_is_recorded_and_the_phase_continues(tmp_path):
    out = tmp_path / "r.json"
    done = run_script(
        "--dry-run", "--phases", "opt-6.7b", "--data-dir", str(tmp_path / "none"), "--out", str(out)
    )
    assert done.returncode == 1
    entry = json.loads(out.read_text())["phases"]["opt-6.7b"]
    assert entry["status"] == "error"
    cells = entry["result"]["cells"]
    assert [c["status"] for c in cells] == ["error", "error"]  # the second cell ran after the first failed
    assert len(entry["result"]["errors"]) == 2 and "FileNotFoundError" in entry["result"]["errors"][0]


def test_paper_shapes_have_the_opt_parameter_counts_and_the_fit_check_says_what_fits():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check_shapes as shapes
    import torch
    from gpu_check_speed import GIB, fits
    from transformers import AutoModelForCausalLM

    from paczero.models.tiny import build_tiny_tokenizer

    for name in shapes.SHAPES:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(shapes.opt_config(name, build_tiny_tokenizer()))
        assert sum(p.numel() for p in model.parameters()) == shapes.parameter_count(name), name
    assert round(shapes.parameter_count("random-opt-1.3b") / 1e9, 2) == 1.32
    assert round(shapes.parameter_count("random-opt-6.7b") / 1e9, 2) == 6.66
    assert fits("random-opt-6.7b", "float16", 139 * GIB)[0]
    ok, why = fits("random-opt-6.7b", "float16", 12 * GIB)
    assert not ok and "12.4 GiB (+25% for activations) against 12.0 GiB free" in why
