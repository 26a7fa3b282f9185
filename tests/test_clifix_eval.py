"""eval-retrieval's input: a question file or --modes that cannot be evaluated is one line naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotrag.retrieval.errors import RetrievalError
from sotrag.retrieval.evaluation import load_questions
from tests.test_clifix_ingest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"question": "q", "relevant": ["a.md", 5]}', "q.jsonl:1:"),
        ('{"question": "q", "relevant": [""]}', "q.jsonl:1:"),
        ('{"question": "q", "relevant": [null]}', "q.jsonl:1:"),
    ],
)
def test_relevant_must_be_document_paths(tmp_path: Path, line: str, needle: str) -> None:
    (tmp_path / "q.jsonl").write_text(line + "\n")
    with pytest.raises(RetrievalError, match=needle):
        load_questions(tmp_path / "q.jsonl")


def test_a_folder_or_non_utf8_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(RetrievalError, match="adir is a folder"):
        load_questions(tmp_path / "adir")
    (tmp_path / "bad.jsonl").write_bytes(b'{"question": "\xff", "relevant": ["a.md"]}\n')
    with pytest.raises(RetrievalError, match=r"bad\.jsonl is not UTF-8"):
        load_questions(tmp_path / "bad.jsonl")


def test_eval_retrieval_cli(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"question": "q", "relevant": ["a.md"]}\n')
    assert_one_line_error(run_cli("eval-retrieval", "q.jsonl", "--modes", ",", cwd=tmp_path), 2, "--modes")
    (tmp_path / "bad.jsonl").write_bytes(b'{"question": "\xff", "relevant": ["a.md"]}\n')
    assert_one_line_error(run_cli("eval-retrieval", "bad.jsonl", cwd=tmp_path), 1, "bad.jsonl is not UTF-8")
