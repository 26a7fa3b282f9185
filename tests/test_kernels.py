"""The fused similarity top-k (``sotrag.kernels.similarity_topk``) against its PyTorch reference.

On a GPU the compiled kernel runs. On CPU the same tests run in Triton's interpreter, which Triton only
offers when ``TRITON_INTERPRET=1`` is set before it is first imported: a normal test session imports
Triton without it (vLLM does), so there ``test_interpreter_run`` runs this file again in a fresh
interpreter with the variable set, and the tests themselves are skipped in the parent process.

Every input is fresh random data (the seed is in each failure message), and every buffer the kernels
write is poisoned first with the key that would win any comparison, so an unwritten element shows up.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sotrag.kernels import similarity_topk as st

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNNABLE = DEVICE == "cuda" or st.INTERPRETED
needs_kernel = pytest.mark.skipif(not RUNNABLE, reason="runs on a GPU, or on CPU in a TRITON_INTERPRET=1 process")
POISON_KEY = 2**63 - 1  # beats every real candidate key


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    def poisoned(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        t = torch.empty(shape, dtype=dtype, device=device)
        return t.fill_(POISON_KEY if dtype == torch.int64 else float("nan"))

    monkeypatch.setattr(st, "_empty", poisoned)


def _seeded() -> tuple[int, torch.Generator]:
    seed = random.SystemRandom().randrange(2**31)
    return seed, torch.Generator().manual_seed(seed)


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _data(nq: int, n: int, d: int, kind: str, gen: torch.Generator) -> Inputs:
    q = torch.randn(nq, d, generator=gen)
    x = torch.randn(n, d, generator=gen)
    if kind == "int8":
        xi, scales = st.quantize_int8(x)
        return q.half().to(DEVICE), xi.to(DEVICE), scales.to(DEVICE)
    dtype = torch.float16 if kind == "fp16" else torch.bfloat16
    return q.to(dtype).to(DEVICE), x.to(dtype).to(DEVICE), None


def _check_against_reference(
    q, x, scales, k: int, seed: int, config: st.TileConfig | None = None, **options: bool
) -> None:
    scores, idx = st.similarity_topk(q, x, k, scales, config=config, **options)
    ref_scores, ref_idx = st.similarity_topk_reference(q, x, k, scales, int8_queries=options.get("int8_queries", False))
    msg = f"seed={seed} nq={q.shape[0]} N={x.shape[0]} d={x.shape[1]} k={k} {x.dtype}"
    assert scores.shape == idx.shape == (q.shape[0], k), msg
    assert idx.dtype == torch.int64 and scores.dtype == torch.float32, msg
    assert not torch.isnan(scores).any() and ((idx >= 0) & (idx < x.shape[0])).all(), f"unwritten output, {msg}"
    assert torch.equal(idx.sort(dim=1).values.cpu(), ref_idx.sort(dim=1).values.cpu()), f"index sets differ, {msg}"
    assert torch.equal(idx.cpu(), ref_idx.cpu()), f"order differs, {msg}"
    torch.testing.assert_close(scores.cpu(), ref_scores.cpu(), rtol=1e-3, atol=1e-3, msg=msg)


SHAPES = [  # nq, N, d, k: N off the tile size, nq = 1, k = 1, k = N, k = 128, several query blocks
    (1, 300, 64, 10),
    (5, 1000, 96, 1),
    (3, 77, 32, 77),
    (4, 300, 32, 128),
    (70, 200, 32, 5),
]


@needs_kernel
@pytest.mark.parametrize("kind", ["fp16", "bf16", "int8"])
@pytest.mark.parametrize(("nq", "n", "d", "k"), SHAPES)
def test_matches_reference(kind: str, nq: int, n: int, d: int, k: int) -> None:
    seed, gen = _seeded()
    q, x, scales = _data(nq, n, d, kind, gen)
    _check_against_reference(q, x, scales, k, seed)


@needs_kernel
@pytest.mark.parametrize("kind", ["fp16", "int8", "int8-queries"])
def test_prefilter_floors_change_nothing(kind: str) -> None:
    """The key floors from a leading slice only drop keys that can not make the top k: same result."""
    seed, gen = _seeded()
    q, x, scales = _data(20, 3000, 32, kind.split("-")[0], gen)
    int8_queries = kind == "int8-queries"
    _check_against_reference(q, x, scales, 10, seed, prefilter=True, int8_queries=int8_queries)
    _check_against_reference(q, x, scales, 10, seed, prefilter=False, int8_queries=int8_queries)


@needs_kernel
@pytest.mark.parametrize(("nq", "n", "d", "k"), [(1, 300, 64, 10), (4, 300, 32, 128), (3, 77, 32, 77)])
def test_int8_queries_on_the_int8_dot(nq: int, n: int, d: int, k: int) -> None:
    """int8 x int8 -> int32 sums, times both scales: the same numbers as the reference's integer matmul."""
    seed, gen = _seeded()
    q, x, scales = _data(nq, n, d, "int8", gen)
    _check_against_reference(q, x, scales, k, seed, int8_queries=True)


@needs_kernel
def test_several_merge_rounds() -> None:
    """5000 rows in 40 tiles give 400 candidates a query: with 128-candidate merge chunks, three rounds."""
    seed, gen = _seeded()
    q, x, _ = _data(4, 5000, 32, "fp16", gen)
    _check_against_reference(q, x, None, 10, seed, st.TileConfig(block_n=128, merge_block=128))


@needs_kernel
@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_ties_come_in_index_order(kind: str) -> None:
    """Small integers: dot products are exact, so many rows tie; equal scores must keep the lower index first."""
    seed, gen = _seeded()
    q = torch.randint(-1, 2, (6, 16), generator=gen).half()
    x = torch.randint(-1, 2, (600, 16), generator=gen)
    # Query 0 all +-1: only a row equal to it reaches its top score (16). Rows 17, 400 and 599 are; any other row
    # that happens to be (a chance of 3^-16 each) is changed, so the top 3 are exactly those three.
    q[0] = torch.randint(0, 2, (16,), generator=gen).half() * 2 - 1
    x[(x == q[0].to(x.dtype)).all(dim=1), 0] = 0
    x[17] = x[400] = x[599] = q[0].to(x.dtype)  # exact duplicates of the best row for query 0
    if kind == "int8":
        xi, scales = x.to(torch.int8), torch.full((600,), 0.5)
        args: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] = (q.to(DEVICE), xi.to(DEVICE), scales.to(DEVICE))
    else:
        args = (q.to(DEVICE), x.half().to(DEVICE), None)
    ref_scores, _ = st.similarity_topk_reference(args[0], args[1], 40, args[2])
    assert (ref_scores[:, :-1] == ref_scores[:, 1:]).any(), "the data must contain ties"
    _check_against_reference(args[0], args[1], args[2], 40, seed)
    _, idx = st.similarity_topk(args[0], args[1], 3, args[2])
    assert idx[0].tolist() == [17, 400, 599], f"seed={seed}"


@needs_kernel
def test_scores_are_inner_products_of_scaled_rows() -> None:
    """The int8 path scores scale * (q . row): compare with the dequantized rows in float64."""
    seed, gen = _seeded()
    q, xi, scales = _data(3, 400, 64, "int8", gen)
    assert scales is not None
    scores, idx = st.similarity_topk(q, xi, 10, scales)
    deq = xi.double() * scales.double()[:, None]
    expect = (q.double() @ deq.T).gather(1, idx)
    torch.testing.assert_close(scores.double(), expect, rtol=1e-4, atol=1e-4, msg=f"seed={seed}")


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a GPU: 2.3e9 elements")
@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_offsets_past_int32(kind: str) -> None:
    """N * d above 2**31 elements: row offsets must not wrap around."""
    seed = random.SystemRandom().randrange(2**31)
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    n, d = 3_000_000, 768
    q = torch.randn(2, d, device=DEVICE, generator=gen).half()
    x = torch.randn(n, d, device=DEVICE, generator=gen, dtype=torch.float16)
    x[n - 5] = q[0] * 4  # the best row for query 0 sits past element 2**31
    scales = None
    if kind == "int8":
        x, scales = st.quantize_int8(x)
    _check_against_reference(q, x, scales, 10, seed)
    assert int(st.similarity_topk(q, x, 1, scales)[1][0, 0]) == n - 5


def test_quantize_int8_round_trip() -> None:
    seed, gen = _seeded()
    x = torch.randn(50, 33, generator=gen)
    x[3] = 0.0
    xi, scales = st.quantize_int8(x)
    assert xi.dtype == torch.int8 and scales.dtype == torch.float32 and scales.shape == (50,)
    err = (xi.float() * scales[:, None] - x).abs()
    assert (err <= scales[:, None] / 2 + 1e-6).all(), f"seed={seed}"
    assert (xi[3] == 0).all() and xi.abs().max() == 127


@pytest.mark.parametrize(
    ("q_shape", "x_shape", "x_dtype", "k", "scales", "match"),
    [
        ((2, 8), (10, 8), torch.float32, 3, None, "float16 or bfloat16"),
        ((2, 8), (10, 4), torch.float16, 3, None, "d=8"),
        ((8,), (10, 8), torch.float16, 3, None, r"\[nq, d\]"),
        ((2, 8), (10, 8), torch.float16, 0, None, "k must be"),
        ((2, 8), (10, 8), torch.float16, 11, None, "k must be"),
        ((2, 8), (200, 8), torch.float16, 129, None, "k must be"),
        ((2, 8), (10, 8), torch.float16, 3, "fp32", "int8 corpus"),
        ((2, 8), (10, 8), torch.int8, 3, "wrong", "scales must be float32"),
        ((2, 8), (10, 8), torch.float16, 3, "queries-int8", "int8_queries needs"),
    ],
)
def test_bad_input_is_a_clear_value_error(q_shape, x_shape, x_dtype, k, scales, match) -> None:
    q = torch.randn(*q_shape).half()
    x = torch.randn(*x_shape).to(x_dtype) if x_dtype != torch.int8 else torch.ones(*x_shape, dtype=torch.int8)
    s = None if scales in (None, "queries-int8") else torch.ones(x_shape[0]) if scales == "fp32" else torch.ones(3)
    if scales == "wrong":
        s = torch.ones(3, dtype=torch.float16)
    opts = {"int8_queries": scales == "queries-int8"}
    with pytest.raises(ValueError, match=match):
        st.similarity_topk(q, x, k, s, **opts)
    with pytest.raises(ValueError, match=match):
        st.similarity_topk_reference(q, x, k, s, **opts)


@pytest.mark.skipif(RUNNABLE, reason="only a CPU process without the interpreter refuses")
def test_cpu_without_interpreter_says_how() -> None:
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        st.similarity_topk(torch.randn(1, 8).half(), torch.randn(20, 8).half(), 3)


@pytest.mark.skipif(RUNNABLE, reason="the kernel tests already run in this process")
def test_interpreter_run() -> None:
    """This file again, in a fresh Python with TRITON_INTERPRET=1: the kernel tests really run on CPU."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, out[-2000:]
