"""Reports: figures and a self-contained HTML page, the privacy statement, the model card, TensorBoard."""

import json
import re

import pytest
import yaml

from paczero.cli import main
from paczero.report.html import write_report
from paczero.trainer import Trainer
from tests.conftest import tiny_config

QUICK = ("train.steps=12", "train.eval_every=4", "train.lr=3.0e-2", "task.dev_size=32", "task.test_size=32")
RUN_FIGURES = {"dev", "privacy", "unanimity", "q_plus", "sigma"}
DP = ("privacy.mechanism=dpzero", "privacy.match_mi=0.33", "privacy.sampling_rate=0.25", "train.clip=1.0")
MECHANISMS = {
    "mi": ("privacy.mechanism=paczero-mi", "privacy.budget=0.2"),
    "zpl": ("privacy.mechanism=paczero-zpl",),
    "mezo": ("privacy.mechanism=mezo",),
    "dp": DP,
}
LONG_FLOAT = re.compile(r"\d\.\d{5,}")  # an unformatted float such as 0.5699999928474426


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four finished tiny runs under one folder, the way a comparison directory holds them."""
    root = tmp_path_factory.mktemp("compare")
    (root / "table.md").write_text("| run | mechanism |\n")
    summaries = {}
    for name, overrides in MECHANISMS.items():
        summaries[name] = Trainer(tiny_config(*QUICK, *overrides), root / "runs" / name).run()
    return root, summaries


def text_of(page: str) -> str:
    """The page without its inlined images."""
    return re.sub(r'src="data:image/png;base64,[^"]*"', "", page)


def assert_self_contained(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_report_for_a_run_has_every_figure_and_a_self_contained_page(runs):
    root, _ = runs
    report = write_report(root / "runs" / "mi")
    assert set(report.figures) == RUN_FIGURES and not report.notes  # an MI run has data for every figure
    for path in report.figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.html.read_text()
    assert_self_contained(page)
    assert page.count("<img") == len(RUN_FIGURES) and "Privacy statement" in page
    assert not LONG_FLOAT.search(text_of(page))


@pytest.mark.parametrize(
    "name, figures",
    [
        ("zpl", {"dev", "unanimity", "q_plus"}),
        ("mezo", {"dev", "unanimity", "q_plus"}),
        ("dp", {"dev", "privacy", "sigma"}),
    ],
)
def test_report_leaves_out_figures_that_do_not_apply(runs, name, figures):
    root, _ = runs
    report = write_report(root / "runs" / name)
    assert set(report.figures) == figures and not report.notes
    assert {p.stem for p in report.directory.glob("*.png")} == figures
    assert text_of(report.html.read_text()).count("<img") == len(figures)


@pytest.mark.parametrize(
    "name, words",
    [
        ("zpl", ["I(S*; transcript) = 0", "reveal nothing about which of the M = 16 candidate subsets"]),
        ("mi", ["I(S*; transcript) ≤ 0.2 nats", "at most p* = "]),
        ("dp", ["-differential privacy for adding or removing one pool example", "δ) = (2.01, 1e-05)"]),
        ("mezo", ["No privacy guarantee"]),
    ],
)
def test_report_opens_with_privacy_in_words_and_formatted_metrics(runs, name, words):
    root, summaries = runs
    page = text_of(write_report(root / "runs" / name).html.read_text())
    headline = page.split('<p class="privacy">', 1)[1].split("</p>", 1)[0]
    assert all(w in headline for w in words), headline
    summary = summaries[name]
    start, test = summary["dev"]["start"]["accuracy"], summary["test"]["accuracy"]
    assert f"{100 * start:.1f}% at step 0 (zero-shot)" in page
    assert f"Test accuracy of the selected model: {100 * test:.1f}%" in page
    assert name == "dp" or "mean over the last 5" in page  # 12 steps: a window of 5, stated
    assert not LONG_FLOAT.search(page), LONG_FLOAT.search(page)
    assert "wall_time" not in page and "seconds" not in page


def test_report_for_a_comparison_directory_and_the_cli(runs, capsys):
    root, _ = runs
    assert main(["report", str(root)]) == 0
    out = root / "report"
    for name in ("frontier", "dev", "privacy"):
        assert (out / f"{name}.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert_self_contained(page)
    assert all(name in page for name in ("mi", "zpl", "mezo", "dpzero"))
    assert not LONG_FLOAT.search(text_of(page))
    assert "frontier" in capsys.readouterr().out


def test_report_refuses_a_directory_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        write_report(tmp_path)


def test_privacy_statement_and_summary_block_cover_the_required_items(runs):
    root, summaries = runs
    privacy = summaries["mi"]["privacy"]
    for key in ("unit", "matching_rule", "not_covered", "versions", "pool_size", "subsets", "prior"):
        assert key in privacy, key
    assert set(privacy["versions"]) >= {"paczero", "torch", "transformers", "peft"}
    text = (root / "runs" / "mi" / "privacy.md").read_text()
    for phrase in (
        "Unit of privacy",
        "Secret model",
        "free of charge",
        "noisy",
        "MI spent",
        "attack success bound",
        "Matched DP ε",
        "Matching rule",
        "torch",
        "membership in the pool",
    ):
        assert phrase.lower() in text.lower(), phrase


def test_model_card_follows_hub_conventions_and_holds_no_secret(runs):
    root, summaries = runs
    card = (root / "runs" / "mi" / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "peft" and "base_model" not in front  # tiny-opt is no Hub model
    assert front["model-index"][0]["results"] and front["paczero_version"]
    assert {"paczero", "paczero-mi"} <= set(front["tags"]) and "accuracy" in front["metrics"]
    assert "## Privacy statement" in card and "## Metrics" in card
    assert "secret" not in json.dumps(front) and "secret_index" not in card


def test_zpl_runs_with_different_secrets_get_identical_model_cards_and_reports(make_config, tmp_path):
    """Cards and reports are functions of the public outputs: byte for byte the same under any secret."""
    outputs = []
    for j in (2, 11):
        run = tmp_path / f"secret-{j}" / "zpl"  # same run name: the page title shows it
        cfg = make_config(
            "privacy.mechanism=paczero-zpl",
            "privacy.secure=false",
            "privacy.seed=7",
            f"privacy.secret_index={j}",
            *QUICK,
        )
        Trainer(cfg, run).run()
        first = write_report(run).html.read_bytes()
        report = write_report(run)  # writing it again changes nothing
        assert report.html.read_bytes() == first
        files = [run / "model" / "README.md", report.html, *sorted(report.figures.values())]
        outputs.append([f.read_bytes() for f in files])
    assert outputs[0] == outputs[1]
