"""Numbers on the command line and in the settings are finite and bounded: one line, exit 2, for nan/inf/huge."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sotrag.app.config import LimitsConfig, SamplingConfig, Settings
from tests.test_clifix_ingest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("ingest", "docs", "--max-file-mb", "1e308"), "--max-file-mb"),
        (("ingest", "docs", "--max-file-mb", "inf"), "--max-file-mb"),
        (("ingest", "docs", "--max-file-mb", "nan"), "--max-file-mb"),
        (("search", "cats", "-k", "99999999999999999999"), "-k"),
        (("serve", "--max-upload-mb", "nan"), "--max-upload-mb"),
        (("serve", "--max-upload-mb", "inf"), "--max-upload-mb"),
        (("serve", "--max-upload-mb", "1e308"), "--max-upload-mb"),
        (("train-router", "labels.csv", "--out", "out/r.npz", "--beta", "nan"), "--beta"),
        (("train-router", "labels.csv", "--out", "out/r.npz", "--beta", "inf"), "--beta"),
        (("train-router", "labels.csv", "--out", "out/r.npz", "--min-precision", "nan"), "--min-precision"),
        (("ask", "hi", "--temperature", "nan"), "--temperature"),
    ],
)
def test_a_number_that_is_not_finite_or_too_large_is_refused(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "labels.csv").write_text("label;request\n1;a\n")
    proc = run_cli(*args, cwd=tmp_path)
    assert_one_line_error(proc, 2, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "labels.csv"]


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_settings_refuse_inf_and_nan_from_the_environment(value: str, tmp_path: Path) -> None:
    proc = run_cli("serve", cwd=tmp_path, env={"SOTRAG_LIMITS__MAX_UPLOAD_MB": value})
    assert_one_line_error(proc, 2, "SOTRAG_LIMITS__MAX_UPLOAD_MB")
    with pytest.raises(ValidationError):
        LimitsConfig(max_upload_mb=float(value))
    with pytest.raises(ValidationError):
        SamplingConfig(temperature=float(value))
    with pytest.raises(ValidationError):
        Settings.model_validate({"context_share": float(value)})


def test_retrieval_settings_refuse_inf_and_nan(tmp_path: Path) -> None:
    proc = run_cli("search", "cats", cwd=tmp_path, env={"SOTRAG_RETRIEVAL__DENSE_WEIGHT": "inf"})
    assert_one_line_error(proc, 1, "SOTRAG_RETRIEVAL__DENSE_WEIGHT")
    proc = run_cli("serve", cwd=tmp_path, env={"SOTRAG_RETRIEVAL__LEXICAL_WEIGHT": "nan"})
    assert_one_line_error(proc, 2, "SOTRAG_RETRIEVAL__LEXICAL_WEIGHT")
