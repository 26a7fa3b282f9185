"""The replay processor's per-step part without an engine: ``update_state`` under vLLM's batch updates (added,
removed, moved, swapped) and ``apply`` on CPU logits, both of its paths (the replayed requests on the batch's
first rows: one fill and a scatter; replayed rows elsewhere: rows filled and indexed by number), its lagging
output lists and its buffers' growth; and the decoding of a prompt's end when a request is added. Every expected
row is computed here from the scripts, never by the code under test; ``identify`` and the engine run are tested
in ``test_replay.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sotrag.app.engines.replay import ReplayLogitsProcessor, _Request

MoveDirectionality = pytest.importorskip("vllm.v1.sample.logits_processor").MoveDirectionality
from vllm.v1.sample.logits_processor import BatchUpdate  # noqa: E402

VOCAB, EOS, PASS = 64, 1, -1  # a prompt [PASS] matches no script (unmatched="pass")
NO_PARAMS: Any = None  # the processor reads no sampling parameters of these requests


def script(k: int) -> tuple[int, ...]:
    """Request ``k``'s recorded ids: distinct per request and position, never the end id."""
    return tuple(2 + (5 * k + 3 * i) % (VOCAB - 2) for i in range(4 + k))


def processor() -> ReplayLogitsProcessor:
    """The processor with its per-batch state only; a prompt [k] is matched to ``script(k)``."""
    p = object.__new__(ReplayLogitsProcessor)
    p._init_state(pin=False)

    def match(params: Any, prompt: list[int] | None, output: list[int]) -> _Request | None:
        return None if prompt == [PASS] else _Request(script(prompt[0]), output, EOS)  # type: ignore[index]

    p._match = match  # type: ignore[method-assign,assignment]
    return p


def update(p: ReplayLogitsProcessor, size: int, removed=(), added=(), moved=()) -> None:
    p.update_state(
        BatchUpdate(
            batch_size=size,
            removed=list(removed),
            added=[(row, NO_PARAMS, [k], out) for row, k, out in added],
            moved=[(a, b, getattr(MoveDirectionality, d)) for a, b, d in moved],
        )
    )


def masked(p: ReplayLogitsProcessor, batch: int) -> tuple[list[int | None], torch.Tensor, torch.Tensor]:
    """Apply to random logits: per row the one id left (None where the row was left alone), and both tensors."""
    before = torch.randn(batch, VOCAB)
    after = p.apply(before.clone())
    rows: list[int | None] = []
    for r in range(batch):
        if torch.equal(after[r], before[r]):
            rows.append(None)
            continue
        finite = torch.isfinite(after[r]).nonzero().flatten().tolist()
        assert len(finite) == 1 and after[r, finite[0]] == 0, f"row {r} is not masked to one id: {finite}"
        rows.append(finite[0])
    return rows, before, after


def test_every_row_replayed_in_row_order_after_swaps_and_moves() -> None:
    p = processor()
    outs: dict[int, list[int]] = {k: [] for k in range(4)}
    update(p, 3, added=[(0, 0, outs[0]), (1, 1, outs[1]), (2, 2, outs[2])])
    assert masked(p, 3)[0] == [script(0)[0], script(1)[0], script(2)[0]]

    outs[0].append(7)  # one token written: the live lists move on
    outs[2].extend([7, 7])
    update(p, 3, moved=[(0, 2, "SWAP")])  # the dict's order is no longer the rows' order
    assert masked(p, 3)[0] == [script(2)[2], script(1)[0], script(0)[1]]

    update(p, 2, removed=[1], moved=[(2, 1, "UNIDIRECTIONAL")])  # condensed: row 2 slides into row 1
    assert masked(p, 2)[0] == [script(2)[2], script(0)[1]]

    update(p, 3, added=[(2, 3, outs[3])])
    assert masked(p, 3)[0] == [script(2)[2], script(0)[1], script(3)[0]]


def test_rows_not_replayed_are_left_alone_wherever_they_are() -> None:
    p = processor()
    update(p, 3, added=[(0, 0, []), (1, 1, []), (2, 2, [])])
    assert masked(p, 3)[0] == [script(0)[0], script(1)[0], script(2)[0]]

    update(p, 3, removed=[1], added=[(1, PASS, [])])  # a sampled request between two replayed ones
    rows, before, after = masked(p, 3)
    assert rows == [script(0)[0], None, script(2)[0]]
    assert torch.equal(after[1], before[1])

    update(p, 3, moved=[(1, 2, "SWAP")])  # the sampled one last: the replayed ones are the first rows
    rows, before, after = masked(p, 3)
    assert rows == [script(0)[0], script(2)[0], None]
    assert torch.equal(after[2], before[2])

    update(p, 3, removed=[0], added=[(0, PASS, [])])  # the sampled ones first
    assert masked(p, 3)[0] == [None, script(2)[0], None]


@pytest.mark.parametrize("sampled_first", [False, True], ids=["first rows", "rows by number"])
def test_the_position_is_the_live_output_length_and_the_end_id_follows_the_script(sampled_first: bool) -> None:
    p = processor()
    out: list[int] = []
    if sampled_first:
        update(p, 2, added=[(0, PASS, []), (1, 2, out)])
    else:
        update(p, 1, added=[(0, 2, out)])
    seen = []
    for _ in range(len(script(2)) + 2):  # more steps than buffers in the ring
        seen.append(masked(p, 1 + sampled_first)[0][-1])
        out.append(-1)  # under async scheduling a placeholder stands for the token in flight: still one more
    assert seen == [*script(2), EOS, EOS]


def test_a_batch_larger_than_the_buffers() -> None:
    p = processor()
    n = 300  # the buffers start at 256 columns
    update(p, n, added=[(row, row % 7, [0] * (row % 3)) for row in range(n)])
    assert masked(p, n)[0] == [script(row % 7)[row % 3] for row in range(n)]
    update(p, n, removed=[5], added=[(5, PASS, [])])
    rows = masked(p, n)[0]
    assert rows[5] is None and rows[299] == script(299 % 7)[299 % 3]


def test_no_replayed_request_leaves_the_logits_alone() -> None:
    p = processor()
    update(p, 2, added=[(0, PASS, []), (1, PASS, [])])
    assert masked(p, 2)[0] == [None, None]
    update(p, 0, removed=[0, 1])
    assert p.requests == {}


# -- update_state's decoding of prompt ends ----------------------------------------------------------------------


def test_the_prompt_end_decodes_as_the_tokenizer_decodes() -> None:
    from tests.replay_support import real_rows
    from tests.tiny_model import build_tokenizer

    tok = build_tokenizer()
    p = processor()
    p.tokenizer = tok
    text = (
        "<|im_start|>user\n" + "\n".join(r["normal"] for r in real_rows()[:3]) + "<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tok.encode(text, add_special_tokens=False)
    parts: tuple[list[int], ...] = (ids, ids[-300:], ids[:256], ids[1:2], [])
    for part in parts:
        assert p._decode(part) == tok.decode(part, skip_special_tokens=False)


def test_a_tokenizer_that_cleans_up_spaces_decodes_through_its_own_decode() -> None:
    class Backend:
        def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
            return "backend"

    class Tokenizer:
        backend_tokenizer = Backend()

        def __init__(self, clean_up: bool) -> None:
            self.clean_up_tokenization_spaces = clean_up

        def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
            return "tokenizer"

    p = processor()
    p.tokenizer = Tokenizer(clean_up=True)  # type: ignore[assignment]
    assert p._decode([1]) == "tokenizer"
    p.tokenizer = Tokenizer(clean_up=False)  # type: ignore[assignment]
    assert p._decode([1]) == "backend"
