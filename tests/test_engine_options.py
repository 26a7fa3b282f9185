"""Engine options pass through to vLLM: n-gram speculative decoding (prompt lookup), which suits answers that
copy from retrieved passages, runs through the same pipeline; the parallelism options (tensor, pipeline, data
parallel, executor backend) reach ``AsyncEngineArgs`` and vLLM's own parallel config; every numeric engine option
is range-checked by pydantic, and a bad one is one line on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from sotrag.app.config import EngineConfig, SamplingConfig, Settings
from sotrag.app.engines.base import EngineError
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.pipeline import SoTPipeline
from tests.conftest import tiny_engine_config

PARALLEL = {
    "tensor_parallel_size": 2,
    "pipeline_parallel_size": 2,
    "data_parallel_size": 2,
    "distributed_executor_backend": "mp",
}


@pytest.mark.engine
async def test_ngram_speculative_decoding_passes_through(tiny_model_dir: Path) -> None:
    spec = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
    config = tiny_engine_config(tiny_model_dir).model_copy(update={"speculative_config": spec})
    engine = await VLLMEngine.create(config)
    try:
        assert engine._llm.vllm_config.speculative_config.method == "ngram"
        sampling = SamplingConfig(normal_max_tokens=32, normal_min_tokens=32)
        result = await SoTPipeline(engine, Settings(sampling=sampling)).run("repeat repeat repeat", mode="normal")
        assert result.stats.tokens == 32
    finally:
        await engine.aclose()


@pytest.mark.engine
async def test_parallel_options_reach_async_engine_args(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``VLLMEngine.create`` hands the parallelism to ``AsyncLLM.from_engine_args`` (stopped there: this machine
    has no 8 devices), and a start failure is an ``EngineError``."""
    from vllm.v1.engine.async_llm import AsyncLLM

    seen: list[Any] = []

    def capture(cls: type, args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        raise RuntimeError("stopped by the test before any worker starts")

    monkeypatch.setattr(AsyncLLM, "from_engine_args", types.MethodType(capture, AsyncLLM))
    config = tiny_engine_config(tiny_model_dir).model_copy(update=PARALLEL)
    with pytest.raises(EngineError, match="stopped by the test"):
        await VLLMEngine.create(config)
    (args,) = seen
    assert {name: getattr(args, name) for name in PARALLEL} == PARALLEL
    defaults = EngineConfig()
    assert (defaults.tensor_parallel_size, defaults.pipeline_parallel_size, defaults.data_parallel_size) == (1, 1, 1)


@pytest.mark.engine
def test_vllm_builds_its_parallel_config_from_them(tiny_model_dir: Path) -> None:
    """vLLM's own config accepts the options as sotrag passes them (world size = TP x PP). In a subprocess:
    building vLLM's config sets process-wide environment variables that would leak into the session engine."""
    script = (
        "import json, sys\n"
        "from vllm import AsyncEngineArgs\n"
        "from sotrag.app.config import EngineConfig\n"
        "from sotrag.app.engines.vllm import engine_kwargs\n"
        "cfg = EngineConfig.model_validate(json.loads(sys.argv[1]))\n"
        "p = AsyncEngineArgs(**engine_kwargs(cfg, cfg.model)).create_engine_config().parallel_config\n"
        "print(json.dumps([p.tensor_parallel_size, p.pipeline_parallel_size, p.data_parallel_size,\n"
        "                  p.distributed_executor_backend, p.world_size]))\n"
    )
    config = tiny_engine_config(tiny_model_dir).model_copy(update=PARALLEL)
    proc = subprocess.run(
        [sys.executable, "-c", script, config.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2, 2, 2, "mp", 4]


def _numeric_fields() -> list[str]:
    numeric = {int, float}
    return [
        name
        for name, field in EngineConfig.model_fields.items()
        if field.annotation in numeric or numeric & set(get_args(field.annotation))
    ]


def test_every_numeric_engine_option_is_range_checked() -> None:
    """The class, not the instance: any numeric engine option added later without a lower bound fails here."""
    names = _numeric_fields()
    sizes = {"tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "max_num_seqs", "max_model_len"}
    assert sizes <= set(names)
    for name in names:
        for bad in (-1, 0) if name in sizes or name.endswith("_gib") else (-1,):
            with pytest.raises(ValidationError) as caught:
                EngineConfig.model_validate({name: bad})
            assert caught.value.errors()[0]["loc"] == (name,), name


def test_engine_option_errors_name_the_option() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        EngineConfig(tensor_parallel_size=0)
    with pytest.raises(ValidationError, match="'mp', 'ray'"):
        EngineConfig.model_validate({"distributed_executor_backend": "slurm"})
    with pytest.raises(ValidationError, match=r"not inside engine\.extra"):  # extra would bypass the checks
        EngineConfig(extra={"tensor_parallel_size": 0})
    assert EngineConfig(distributed_executor_backend="ray", pipeline_parallel_size=4).pipeline_parallel_size == 4


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["ask", "q", "--tensor-parallel-size", "0"], {}, "--tensor-parallel-size: Input should be greater than"),
        (["ask", "q", "--pipeline-parallel-size", "-1"], {}, "--pipeline-parallel-size: Input should be greater"),
        (["ask", "q", "--distributed-executor-backend", "slurm"], {}, "--distributed-executor-backend: Input"),
        (["serve", "--data-parallel-size", "0"], {}, "--data-parallel-size: Input should be greater than"),
        (["ask", "q", "--top-k", "-3"], {}, "--top-k: Input should be greater than or equal to 0"),
        (["ask", "q"], {"SOTRAG_ENGINE__MAX_NUM_SEQS": "0"}, "SOTRAG_ENGINE__MAX_NUM_SEQS: Input should be"),
        (["serve"], {"SOTRAG_ENGINE__TENSOR_PARALLEL_SIZE": "two"}, "SOTRAG_ENGINE__TENSOR_PARALLEL_SIZE: Input"),
    ],
)
def test_bad_engine_option_is_one_line(args: list[str], env: dict[str, str], needle: str) -> None:
    proc = _cli(*args, env=env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
