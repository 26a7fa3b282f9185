"""The trained SoT-R router: deterministic training, the shipped artifact, clear cases, the CLI.

Runs without /work/shared: training uses a small labelled CSV written for these tests (tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sotrag.app.routing.classifier import DEFAULT_ARTIFACT, RouterArtifactError, RouterModel, TrainedRouter
from sotrag.app.routing.training import LabelFileError, metrics, read_labels, train

TINY = Path(__file__).parent / "data" / "router_tiny.csv"


@pytest.fixture(scope="module")
def shipped() -> TrainedRouter:
    return TrainedRouter()


def test_training_is_deterministic(tmp_path: Path) -> None:
    data = read_labels(TINY)
    first = train(data).model.save(tmp_path / "a.npz")
    second = train(data).model.save(tmp_path / "b.npz")
    assert first.read_bytes() == second.read_bytes()

    loaded = RouterModel.load(first)
    assert loaded.info["trained_on"]["sha256"] == data.sha256
    assert loaded.info["trained_on"]["n"] == len(data.questions) == 24
    # What was saved predicts what was trained: the tiny set is separable, so it fits it.
    router = TrainedRouter(loaded)
    assert router.predict(data.questions).tolist() == data.labels.tolist()


def test_shipped_artifact_loads_without_training_data(shipped: TrainedRouter) -> None:
    model = shipped.model
    assert DEFAULT_ARTIFACT.suffix == ".npz" and DEFAULT_ARTIFACT.is_file()
    assert model.embedding_model == "all-MiniLM-L6-v2"
    assert model.info["trained_on"]["file"] == "lima_router_labels.csv"
    assert model.info["trained_on"]["n"] == 1030 and model.info["trained_on"]["positives"] == 371
    assert 0.0 < shipped.threshold < 1.0
    assert model.n_features == 384 * len(model.layers)
    with np.load(DEFAULT_ARTIFACT, allow_pickle=False) as raw:  # no pickled objects inside
        assert set(raw.files) == {"header", "mean", "scale", "coef"}


@pytest.mark.parametrize(
    "question",
    [
        "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
        "Solve for x: 3x + 5 = 20.",
        "Write a Python function that reverses a linked list.",
        "Write a short poem about the sea.",
    ],
)
def test_dependent_or_non_list_questions_go_to_normal(shipped: TrainedRouter, question: str) -> None:
    assert shipped.probability(question) < shipped.threshold


@pytest.mark.parametrize(
    "question",
    [
        "What are some tips to sleep better?",
        "What are the benefits of regular exercise?",
        "List the pros and cons of remote work.",
    ],
)
def test_list_of_independent_points_goes_to_sot(shipped: TrainedRouter, question: str) -> None:
    assert shipped.probability(question) >= shipped.threshold


def test_route_reason_names_the_probability(shipped: TrainedRouter) -> None:
    decision = shipped.route("What are some tips to sleep better?", None)
    assert decision.mode == "sot"
    assert decision.probability is not None
    assert decision.reason.startswith(f"router: list-like, p={decision.probability:.2f}")


def test_threshold_is_configurable(shipped: TrainedRouter) -> None:
    q = "What are some tips to sleep better?"
    assert TrainedRouter(shipped.model, threshold=1.0).predict([q]).tolist() == [0]
    assert TrainedRouter(shipped.model, threshold=0.0).predict([q]).tolist() == [1]
    with pytest.raises(ValueError):
        TrainedRouter(shipped.model, threshold=1.5)


def test_metrics_and_confusion_counts() -> None:
    m = metrics(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (m.tp, m.fn, m.fp, m.tn) == (2, 1, 1, 1)
    assert m.accuracy == pytest.approx(0.6)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)


def test_bad_label_files_are_clear_errors(tmp_path: Path) -> None:
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("y;text\n1;hello\n")
    with pytest.raises(LabelFileError, match="label;request"):
        read_labels(bad_header)
    bad_label = tmp_path / "l.csv"
    bad_label.write_text("label;request\n2;hello\n")
    with pytest.raises(LabelFileError, match="0 or 1"):
        read_labels(bad_label)
    with pytest.raises(LabelFileError, match="no such file"):
        read_labels(tmp_path / "missing.csv")


def test_bad_artifacts_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RouterArtifactError, match="not found"):
        RouterModel.load(tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(RouterArtifactError, match="cannot read"):
        RouterModel.load(junk)


def cli():  # the sotrag app with the router commands registered
    from sotrag.app.cli import app

    return app


def test_eval_router_cli_json_and_table() -> None:
    runner = CliRunner()
    result = runner.invoke(cli(), ["eval-router", str(TINY), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(scores) == {"n", "accuracy", "precision", "recall", "f1"}
    assert scores["n"] == 24 and scores["accuracy"] >= 0.75  # clear-cut questions

    table = runner.invoke(cli(), ["eval-router", str(TINY)])
    assert table.exit_code == 0
    assert "confusion matrix" in table.stdout and "F1" in table.stdout


def test_eval_router_cli_bad_file_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["eval-router", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2
    assert "no such file" in result.output and "Traceback" not in result.output


def test_train_router_cli_writes_an_artifact(tmp_path: Path) -> None:
    out = tmp_path / "r.npz"
    result = CliRunner().invoke(cli(), ["train-router", str(TINY), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n"] == 24 and Path(report["artifact"]) == out
    assert RouterModel.load(out).threshold == report["threshold"]
