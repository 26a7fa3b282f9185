"""The deploy files never start an open vLLM server: vLLM drops an empty ``VLLM_API_KEY`` and serves /v1 with no
auth, so its container (compose and Kubernetes alike) runs a shell check first that refuses a key sotrag itself
would refuse (blank, short, not printable ASCII). The check is run here as the container would run it, with a
stand-in ``vllm`` that prints its arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GOOD = "vllm-key-0123456789abcdef"


def compose_argv() -> list[str]:
    vllm = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["vllm"]
    # compose turns $$ into $ (its own interpolation) before running the entrypoint
    return [a.replace("$$", "$") for a in vllm["entrypoint"]] + ["Qwen/Qwen2.5-7B-Instruct", "--port=8000"]


def k8s_argv() -> list[str]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "vllm.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return [*c["command"], *c["args"]]


def example_vllm_key(path: Path) -> str:
    (line,) = [x for x in path.read_text().splitlines() if x.startswith("VLLM_API_KEY=")]
    return line.split("=", 1)[1]


def run(argv: list[str], key: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "vllm"
    fake.write_text('#!/bin/sh\necho "ran vllm $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    if key is not None:
        env["VLLM_API_KEY"] = key
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_vllm_container_refuses_a_missing_or_weak_key(where: str, tmp_path: Path) -> None:
    argv = compose_argv() if where == "compose" else k8s_argv()
    unfilled = example_vllm_key(DEPLOY / ("secrets.env.example" if where == "compose" else "k8s/secrets.env.example"))
    for key in (unfilled, None, "   ", "short-key", "clé-0123456789abcdef", "spaced key 0123456789"):
        proc = run(argv, key, tmp_path)
        assert proc.returncode != 0 and "ran vllm" not in proc.stdout, (key, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "VLLM_API_KEY" in proc.stderr, proc.stderr
    ok = run(argv, GOOD, tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ran vllm serve Qwen/Qwen2.5-7B-Instruct"), ok.stderr
    assert "--port=8000" in ok.stdout
