"""``sotrag train-router`` and ``sotrag eval-router``: rebuild the shipped router, and score it on labelled CSVs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sotrag.app.cli.common import fail

VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="show the libraries' logs and progress bars")]


def train_router(
    labels_csv: Annotated[Path, typer.Argument(help="label;request CSV to train on (the LIMA router labels)")],
    out: Annotated[
        Path | None, typer.Option(help="artifact to write (default: the packaged app/routing/assets/router.npz)")
    ] = None,
    rule: Annotated[
        str,
        typer.Option(help="the threshold maximizes cross-validated accuracy (default) or F-beta ('fbeta', see --beta)"),
    ] = "accuracy",
    beta: Annotated[
        float, typer.Option(help="with --rule fbeta: the threshold maximizes CV F-beta (beta<1 favours precision)")
    ] = 1.0,
    min_precision: Annotated[float, typer.Option(help="only thresholds with at least this CV precision")] = 0.70,
    threshold: Annotated[
        float | None, typer.Option(help="fix the decision threshold instead of choosing it by CV")
    ] = None,
    encoder: Annotated[
        str, typer.Option(help="feature encoder: onnx-int8 (default, fast), onnx-fp32 or torch-fp32 (reference)")
    ] = "onnx-int8",
    head: Annotated[
        str, typer.Option(help="the head: svm-rbf (default) or logistic (the head shipped before issue 24)")
    ] = "svm-rbf",
    json_out: Annotated[bool, typer.Option("--json", help="print the training report as JSON")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Train the SoT-R router on LABELS_CSV (deterministic; CV on that file only) and write the artifact."""
    quiet_router_libraries(verbose)
    from sotrag.app.routing.classifier import DEFAULT_ARTIFACT, ENCODERS
    from sotrag.app.routing.training import HEADS, THRESHOLD_RULES, HeadOptions, LabelFileError, read_labels, train

    if encoder not in ENCODERS:
        raise fail(f"--encoder must be one of {', '.join(ENCODERS)}")
    if head not in HEADS:
        raise fail(f"--head must be one of {', '.join(HEADS)}")
    if rule not in THRESHOLD_RULES:
        raise fail(f"--rule must be one of {', '.join(THRESHOLD_RULES)}")
    if beta <= 0:
        raise fail("--beta must be > 0")
    if not 0.0 <= min_precision <= 1.0 or (threshold is not None and not 0.0 <= threshold <= 1.0):
        raise fail("--min-precision and --threshold must be in [0, 1]")
    target = out or DEFAULT_ARTIFACT
    if target.is_dir():
        raise fail(f"--out {target} is a folder: give the artifact's file name (e.g. {target / 'router.npz'})")
    if any(parent.exists() and not parent.is_dir() for parent in target.parents):
        raise fail(f"--out {target}: a folder on its path is a file")
    try:
        data = read_labels(labels_csv)
        options = HeadOptions(head=head, rule=rule, beta=beta, min_precision=min_precision, threshold=threshold)
        report = train(data, encoder=encoder, options=options)
    except LabelFileError as exc:
        raise fail(str(exc)) from None
    try:
        path = report.model.save(target)
    except OSError as exc:
        raise fail(f"--out {target}: cannot write it ({exc.strerror or exc})") from None
    cv = report.cv
    summary = {
        "artifact": str(path),
        "n": cv.n,
        "C": report.c,
        "threshold": report.model.threshold,
        "encoder": report.model.encoder,
        "head": report.model.head,
        "cv_auc": round(report.cv_auc, 4),
        "cv": cv.as_dict(),
    }
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    console = Console()
    console.print(f"trained on {cv.n} questions ({int(data.labels.sum())} suit SoT); wrote {path}")
    console.print(
        f"head={report.model.head}  C={report.c}  threshold={report.model.threshold:.2f}  "
        f"{CV_NOTE}: AUC {report.cv_auc:.3f}, "
        f"accuracy {cv.accuracy:.3f}, precision {cv.precision:.3f}, recall {cv.recall:.3f}, F1 {cv.f1:.3f}"
    )


CV_NOTE = "5-fold CV"


def eval_router(
    labels_csv: Annotated[Path, typer.Argument(help="label;request CSV to score the router on")],
    artifact: Annotated[Path | None, typer.Option(help="router artifact (default: the packaged one)")] = None,
    threshold: Annotated[float | None, typer.Option(help="override the artifact's decision threshold")] = None,
    json_out: Annotated[bool, typer.Option("--json", help='print {"n","accuracy","precision","recall","f1"}')] = False,
    verbose: VerboseOption = False,
) -> None:
    """Score the router on FILE.csv: accuracy, precision, recall, F1 and the confusion matrix."""
    quiet_router_libraries(verbose)
    from sotrag.app.routing.classifier import RouterArtifactError, TrainedRouter
    from sotrag.app.routing.training import LabelFileError, evaluate, read_labels

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise fail("--threshold must be in [0, 1]")
    try:
        data = read_labels(labels_csv)
        router = TrainedRouter(artifact=artifact, threshold=threshold)
        m = evaluate(router, data)
    except (LabelFileError, RouterArtifactError) as exc:
        raise fail(str(exc)) from None
    if json_out:
        sys.stdout.write(json.dumps(m.as_dict()) + "\n")
        return
    console = Console()
    console.print(f"{labels_csv.name}: {m.n} questions, threshold {router.threshold:.2f}")
    console.print(f"accuracy {m.accuracy:.3f}  precision {m.precision:.3f}  recall {m.recall:.3f}  F1 {m.f1:.3f}")
    table = Table(title="confusion matrix (rows: label, columns: routed)")
    table.add_column("")
    table.add_column("routed sot", justify="right")
    table.add_column("routed normal", justify="right")
    table.add_row("label 1 (suits SoT)", str(m.tp), str(m.fn))
    table.add_row("label 0", str(m.fp), str(m.tn))
    console.print(table)


def quiet_router_libraries(verbose: bool) -> None:
    """As the other commands: no weight-loading progress bar (transformers) nor onnxruntime's quantization advice
    (logged on the root logger) unless ``-v``."""
    if verbose:
        return
    import logging
    import os

    from sotrag.retrieval.cli import quiet_libraries

    os.environ.setdefault("TQDM_DISABLE", "1")
    quiet_libraries(verbose)
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)


def register(app: typer.Typer) -> None:
    """Add ``train-router`` and ``eval-router`` to the ``sotrag`` command line."""
    app.command("train-router")(train_router)
    app.command("eval-router")(eval_router)
