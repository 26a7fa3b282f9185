"""The trained SoT-R router: deterministic training, the shipped artifact, clear cases, the CLI.

Runs without ../shared: training uses a small labelled CSV written for these tests (tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sotrag.app.routing.classifier import (
    DEFAULT_ARTIFACT,
    OnnxQuestionEncoder,
    QuestionEncoder,
    RouterArtifactError,
    RouterModel,
    TrainedRouter,
    build_onnx_encoder,
    question_ids,
)
from sotrag.app.routing.heads import KernelHead, fit_platt, svm_decisions
from sotrag.app.routing.training import HeadOptions, LabelFileError, fit_head, metrics, read_labels, train

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
    assert loaded.head == "svm-rbf" and loaded.kernel is not None and loaded.info["head"]["kind"] == "svm_rbf"


def test_the_logistic_head_still_trains_and_loads(tmp_path: Path) -> None:
    data = read_labels(TINY)
    report = train(data, options=HeadOptions(head="logistic", rule="fbeta"))
    loaded = RouterModel.load(report.model.save(tmp_path / "lr.npz"))
    assert loaded.head == "logistic" and loaded.kernel is None and loaded.coef.shape == (loaded.n_features,)
    assert loaded.info["threshold_rule"]["rule"] == "fbeta"
    assert TrainedRouter(loaded).predict(data.questions).tolist() == data.labels.tolist()
    with np.load(tmp_path / "lr.npz", allow_pickle=False) as raw:
        assert set(raw.files) == {"header", "mean", "scale", "coef"}


def test_kernel_head_equals_scikit_learn_and_survives_float16() -> None:
    """The served SVM is numpy only: its decision values are libsvm's, and storing the support vectors as float16
    (the artifact) moves the probabilities by less than 1e-3 (calibrated out of sample, as ``fit_head`` does)."""
    from sklearn.svm import SVC

    from sotrag.app.routing.heads import fit_kernel_head, gamma_for

    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 64))
    y = (z[:, 0] * z[:, 1] + 0.3 * rng.normal(size=120) > 0).astype(np.int64)  # not linearly separable
    platt_ab = fit_platt(svm_decisions(z[:80], y[:80], 1.0, z[80:]), y[80:])
    head = fit_kernel_head(z[:80], y[:80], 1.0, platt_ab)
    ref = SVC(C=1.0, gamma=gamma_for(64), tol=1e-5).fit(z[:80], y[:80]).decision_function(z[80:])
    np.testing.assert_allclose(head.decision(z[80:]), ref, atol=1e-4)
    p, p16 = head.probabilities(z[80:]), head.rounded().probabilities(z[80:])
    assert np.abs(p - p16).max() < 1e-3 and p.min() >= 0.0 and p.max() <= 1.0


def test_fit_head_chooses_c_and_threshold_out_of_fold() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 16))
    y = (np.linalg.norm(x[:, :2], axis=1) < 1.2).astype(np.int64)  # a disc: no linear head separates it
    svm = fit_head(x, y, HeadOptions(head="svm-rbf", c_grid=(0.3, 3.0)))
    lr = fit_head(x, y, HeadOptions(head="logistic", c_grid=(0.01, 1.0)))
    assert set(svm.cv_log_loss) == {0.3, 3.0} and svm.c == min(svm.cv_log_loss, key=lambda c: svm.cv_log_loss[c])
    assert svm.cv_log_loss[svm.c] < min(lr.cv_log_loss.values())  # the kernel head sees the disc
    assert metrics(y, svm.oof >= svm.threshold).precision >= 0.70
    assert metrics(y, svm.probabilities(x) >= svm.threshold).accuracy > 0.9
    with pytest.raises(ValueError, match="unknown router head"):
        fit_head(x, y, HeadOptions(head="forest"))


def test_shipped_artifact_loads_without_training_data(shipped: TrainedRouter) -> None:
    model = shipped.model
    assert DEFAULT_ARTIFACT.suffix == ".npz" and DEFAULT_ARTIFACT.is_file()
    assert model.embedding_model == "all-MiniLM-L6-v2"
    assert model.encoder == "onnx-int8"  # trained on the features it is served with
    assert model.head == "svm-rbf" and isinstance(model.kernel, KernelHead)
    assert model.info["threshold_rule"]["rule"] == "accuracy"
    assert model.info["trained_on"]["file"] == "lima_router_labels.csv"
    assert model.info["trained_on"]["n"] == 1030 and model.info["trained_on"]["positives"] == 371
    assert 0.0 < shipped.threshold < 1.0
    assert model.n_features == 384 * len(model.layers)
    with np.load(DEFAULT_ARTIFACT, allow_pickle=False) as raw:  # no pickled objects inside
        assert set(raw.files) == {"header", "mean", "scale", "support", "dual"}
        assert raw["support"].dtype == np.float16 and raw["support"].shape[1] == model.n_features


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


# --------------------------------------------------------------------------------------------------------
# The fast encoder (ONNX Runtime) against the torch fp32 reference
# --------------------------------------------------------------------------------------------------------

QUESTIONS = [
    "What are some tips to sleep better?",
    "Solve for x: 3x + 5 = 20.",
    "Write a Python function that reverses a linked list.",
    "How can I improve my time management skills? Give me a plan for a busy week with kids and a job.",
    # over the router's 48 tokens: encoded as its first and last tokens (question_ids)
    "I run a small bakery with four staff, we open at six, the ovens are old and the rent went up twice this "
    "year, and our suppliers keep changing their prices without warning, so planning a month ahead is hard and "
    "my margins shrink every week. What are some ways to cut costs?",
]


@pytest.fixture(scope="module")
def reference(shipped: TrainedRouter) -> QuestionEncoder:
    m = shipped.model
    return QuestionEncoder(m.embedding_model, m.layers, m.max_length, m.tail_tokens)


def test_onnx_fp32_graph_equals_the_torch_reference(shipped: TrainedRouter, reference: QuestionEncoder) -> None:
    # Same layers cut, same pooling, same normalization: the exported graph IS the reference computation.
    m = shipped.model
    fp32 = OnnxQuestionEncoder(m.embedding_model, m.layers, m.max_length, tail_tokens=m.tail_tokens, quantize=False)
    np.testing.assert_allclose(fp32.encode(QUESTIONS), reference.encode(QUESTIONS), atol=1e-4)


def test_int8_features_and_probabilities_stay_close_to_the_reference(
    shipped: TrainedRouter, reference: QuestionEncoder
) -> None:
    fast, ref = shipped.encoder.encode(QUESTIONS), reference.encode(QUESTIONS)
    n_layers = len(shipped.model.layers)
    per_layer_cos = (fast * ref).reshape(len(QUESTIONS), n_layers, -1).sum(-1)  # each block is unit-norm
    assert per_layer_cos.min() > 0.97
    p_fast, p_ref = shipped.model.probabilities(fast), shipped.model.probabilities(ref)
    assert np.abs(p_fast - p_ref).max() < 0.15
    data = read_labels(TINY)  # clear cases: int8 and fp32 features give the same decisions
    assert shipped.predict(data.questions).tolist() == (
        shipped.model.probabilities(reference.encode(data.questions)) >= shipped.threshold
    ).astype(int).tolist()


def test_int8_features_are_deterministic_and_per_question(shipped: TrainedRouter) -> None:
    m = shipped.model
    other = OnnxQuestionEncoder(  # reloaded from cache
        m.embedding_model, m.layers, m.max_length, tail_tokens=m.tail_tokens, threads=2
    )
    together = shipped.encoder.encode(QUESTIONS)
    assert np.array_equal(together, other.encode(QUESTIONS))
    alone = np.concatenate([shipped.encoder.encode([q]) for q in QUESTIONS])
    assert np.array_equal(together, alone)  # a question's features do not depend on its neighbours


def test_long_questions_keep_their_head_and_tail(shipped: TrainedRouter) -> None:
    """The encoder's cost grows with the tokens, so a long question is cut to ``max_length`` ids: [CLS], its first
    tokens, its last ``tail_tokens`` (where the ask often is), [SEP]. A short one is left whole."""
    m = shipped.model
    assert (m.max_length, m.tail_tokens) == (48, 22)
    tok = shipped.encoder._tokenizer  # type: ignore[attr-defined]
    long_q = QUESTIONS[-1]
    content = tok(long_q, add_special_tokens=False)["input_ids"]
    assert len(content) > m.max_length
    ids = question_ids(tok, long_q, m.max_length, m.tail_tokens)
    assert len(ids) == m.max_length
    assert ids == [tok.cls_token_id, *content[:24], *content[-22:], tok.sep_token_id]
    short = QUESTIONS[0]
    assert question_ids(tok, short, m.max_length, m.tail_tokens) == tok(short)["input_ids"]
    # without a tail (older artifacts): the same as the tokenizer's own truncation
    assert question_ids(tok, long_q, 32) == tok(long_q, truncation=True, max_length=32)["input_ids"]


def test_onnx_graph_is_cached_not_rebuilt(shipped: TrainedRouter) -> None:
    m = shipped.model
    first = build_onnx_encoder(m.embedding_model, m.layers)
    stamp = first.stat().st_mtime_ns
    assert build_onnx_encoder(m.embedding_model, m.layers) == first and first.stat().st_mtime_ns == stamp
    assert first == shipped.encoder.path  # type: ignore[attr-defined]


def test_artifact_records_its_encoder_and_old_artifacts_still_load(shipped: TrainedRouter, tmp_path: Path) -> None:
    import dataclasses

    ref_model = dataclasses.replace(shipped.model, encoder="torch-fp32")
    loaded = RouterModel.load(ref_model.save(tmp_path / "ref.npz"))
    assert loaded.encoder == "torch-fp32" and isinstance(TrainedRouter(loaded).encoder, QuestionEncoder)

    # Artifacts from before the SVM head (sotrag-router/2, no "head" key) hold a logistic head.
    lr_model = train(read_labels(TINY), options=HeadOptions(head="logistic")).model
    with np.load(lr_model.save(tmp_path / "lr.npz"), allow_pickle=False) as raw:
        arrays = {k: raw[k] for k in raw.files}
    header = json.loads(str(arrays["header"]))
    header["format"] = "sotrag-router/2"
    del header["head"]
    np.savez(tmp_path / "v2.npz", **(arrays | {"header": np.array(json.dumps(header))}))
    v2 = RouterModel.load(tmp_path / "v2.npz")
    assert v2.head == "logistic" and np.allclose(v2.coef, lr_model.coef, atol=1e-6)

    # A sotrag-router/1 artifact (before the encoder field) is a torch-fp32 one.
    header["format"] = "sotrag-router/1"
    del header["encoder"]
    del header["tail_tokens"]  # artifacts from before the head + tail cut: the head only, as they were trained
    np.savez(tmp_path / "v1.npz", **(arrays | {"header": np.array(json.dumps(header))}))
    old = RouterModel.load(tmp_path / "v1.npz")
    assert old.encoder == "torch-fp32" and old.tail_tokens == 0 and old.head == "logistic"

    header["format"], header["encoder"] = "sotrag-router/2", "tflite"
    np.savez(tmp_path / "bad.npz", **(arrays | {"header": np.array(json.dumps(header))}))
    with pytest.raises(RouterArtifactError, match="unknown encoder"):
        RouterModel.load(tmp_path / "bad.npz")
    header["format"], header["encoder"], header["head"] = "sotrag-router/3", "onnx-int8", "forest"
    np.savez(tmp_path / "bad_head.npz", **(arrays | {"header": np.array(json.dumps(header))}))
    with pytest.raises(RouterArtifactError, match="unknown head"):
        RouterModel.load(tmp_path / "bad_head.npz")


@pytest.mark.parametrize("flag", ["--encoder", "--head", "--rule"])
def test_train_router_cli_rejects_an_unknown_choice(tmp_path: Path, flag: str) -> None:
    result = CliRunner().invoke(cli(), ["train-router", str(TINY), "--out", str(tmp_path / "r.npz"), flag, "x"])
    assert result.exit_code == 2 and flag in result.output and not (tmp_path / "r.npz").exists()
