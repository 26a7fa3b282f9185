"""Router artifacts: a damaged one is a RouterArtifactError (exit 2 on the CLI); --out that cannot be written is
one line naming --out, and no temporary file stays behind. Every --out here is under tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sotrag.app.routing.classifier import DEFAULT_ARTIFACT, RouterArtifactError, RouterModel
from tests.test_clifix_ingest import assert_one_line_error, run_cli


def _artifact_with_header(path: Path, header: object) -> Path:
    with np.load(DEFAULT_ARTIFACT, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "header"}
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    return path


def _shipped_header() -> dict[str, object]:
    with np.load(DEFAULT_ARTIFACT, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
    assert isinstance(header, dict)
    return header


def test_a_damaged_artifact_is_a_router_artifact_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    no_model = {k: v for k, v in _shipped_header().items() if k != "embedding_model"}
    cases = [
        empty,
        _artifact_with_header(tmp_path / "list.npz", [1, 2]),
        _artifact_with_header(tmp_path / "string.npz", "router"),
        _artifact_with_header(tmp_path / "nomodel.npz", no_model),
    ]
    for path in cases:
        with pytest.raises(RouterArtifactError, match=path.name):
            RouterModel.load(path)


def test_eval_router_names_a_damaged_artifact(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("label;request\n1;How to sleep better?\n0;What is 2+2?\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    _artifact_with_header(tmp_path / "list.npz", [1])
    for name in ("empty.npz", "list.npz"):
        proc = run_cli("eval-router", "labels.csv", "--artifact", name, cwd=tmp_path)
        assert_one_line_error(proc, 2, name)


def test_save_into_a_folder_leaves_nothing_behind(tmp_path: Path) -> None:
    model = RouterModel.load(DEFAULT_ARTIFACT)
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError):
        model.save(tmp_path / "adir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"] and not any((tmp_path / "adir").iterdir())
    copy = model.save(tmp_path / "sub" / "r.npz")
    assert sorted(p.name for p in copy.parent.iterdir()) == ["r.npz"]


def test_train_router_refuses_an_out_it_cannot_write(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).parent / "data" / "router_tiny.csv", tmp_path / "labels.csv")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    before = DEFAULT_ARTIFACT.read_bytes()
    for out in ("adir", "afile/x.npz"):
        proc = run_cli("train-router", "labels.csv", "--out", out, cwd=tmp_path)
        assert_one_line_error(proc, 2, f"--out {out}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "labels.csv"]
    assert not any((tmp_path / "adir").iterdir())
    assert DEFAULT_ARTIFACT.read_bytes() == before
