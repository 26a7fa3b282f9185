"""deploy/ checked offline, the way CI can (no Docker, no cluster): the Kubernetes manifests against the API schemas
that ``kubernetes-validate`` ships, the compose file with ``check-jsonschema``'s vendored compose spec, the
Prometheus scrape configs against a schema of the subset they use, and the wiring between them (ports, probes,
Service names, secrets). Each validator is also shown rejecting a broken copy through the same call, so a
validator that accepts anything would fail here."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS_SCHEMA = Path(__file__).parent / "data" / "deploy" / "prometheus-scrape.schema.json"
# Oldest and newest Kubernetes minors we claim; kubernetes-validate ships schemas for 1.25 to 1.37.
K8S_VERSIONS = ("1.29.0", "1.35.0")
SOTRAG_PORT = 8000


# -- helpers ---------------------------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    return [doc for name in kustomization()["resources"] for doc in load_all(K8S / name)]


def generated_secret() -> dict[str, Any]:
    """The Secret kustomize's secretGenerator makes, from the example env file (keys only: values are the user's)."""
    (gen,) = kustomization()["secretGenerator"]
    (env_name,) = gen["envs"]
    example = (K8S / env_name).with_name(env_name + ".example")
    keys = [line.split("=", 1)[0] for line in example.read_text().splitlines() if line and not line.startswith("#")]
    data = dict.fromkeys(keys, "")
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": gen["name"]}, "stringData": data}


def k8s_validate(doc: dict[str, Any], version: str) -> None:
    """Strict: unknown fields are errors. A kind without a schema is an error too (the CLI only warns)."""
    kubernetes_validate.validate(doc, version, strict=True)


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def prometheus_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(PROMETHEUS_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# -- Kubernetes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_are_valid(version: str) -> None:
    docs = [*manifests(), generated_secret()]
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "PersistentVolumeClaim", "Secret"}
    for doc in docs:
        k8s_validate(doc, version)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = broken
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.replicas", "three"),  # wrong type
        ("spec.template.spec.containers.0.readinesProbe", {"httpGet": {"path": "/readyz", "port": 8000}}),  # typo
        ("spec.template.spec.containers.0.ports.0.containerPort", "eight-thousand"),
        ("spec.template.spec.containers.0.resources.limits", "4 CPUs"),
    ],
)
def test_a_broken_manifest_is_rejected(path: str, value: Any) -> None:
    deployment = by_kind("Deployment")["sotrag"]
    k8s_validate(deployment, K8S_VERSIONS[-1])  # the original passes the same call
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(_set(deployment, path, value), K8S_VERSIONS[-1])


def test_unknown_kind_is_an_error_not_a_pass() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        k8s_validate({"apiVersion": "v1", "kind": "Deploymnet", "metadata": {"name": "x"}}, K8S_VERSIONS[-1])


def test_kustomization_lists_every_manifest_and_file() -> None:
    kust = kustomization()
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for gen in kust["configMapGenerator"]:
        for name in gen["files"]:
            assert (K8S / name).is_file(), name
    (secret_env,) = kust["secretGenerator"][0]["envs"]
    assert (K8S / f"{secret_env}.example").is_file()
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert f"deploy/k8s/{secret_env}" in ignored and "deploy/secrets.env" in ignored


def test_sotrag_pods_probe_and_serve_on_one_port() -> None:
    deployments = by_kind("Deployment")
    services = by_kind("Service")
    readers, writer = deployments["sotrag"], deployments["sotrag-admin"]
    assert readers["spec"]["replicas"] >= 2
    assert writer["spec"]["replicas"] == 1 and writer["spec"]["strategy"]["type"] == "Recreate"  # one writer
    for dep in (readers, writer):
        (c,) = containers(dep)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": SOTRAG_PORT}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["args"][c["args"].index("--port") + 1] == str(SOTRAG_PORT)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        claim = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert claim[mounts["/data/index"]] == "sotrag-index"
        # each Service selects exactly its own Deployment's pods
        labels = dep["spec"]["template"]["metadata"]["labels"]
        (svc,) = [s for s in services.values() if s["spec"]["selector"].items() <= labels.items()]
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert env_of(containers(readers)[0])["SOTRAG_SERVER__READ_ONLY"]["value"] == "true"
    assert "SOTRAG_SERVER__READ_ONLY" not in env_of(containers(writer)[0])
    pvc = by_kind("PersistentVolumeClaim")["sotrag-index"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # replicas on different nodes share the one folder


def test_sotrag_points_at_the_vllm_service() -> None:
    vllm_svc = by_kind("Service")["vllm"]
    port = vllm_svc["spec"]["ports"][0]["port"]
    for name in ("sotrag", "sotrag-admin"):
        urls = json.loads(env_of(containers(by_kind("Deployment")[name])[0])["SOTRAG_ENGINE__URLS"]["value"])
        assert urls == [f"http://{vllm_svc['metadata']['name']}:{port}/v1"]


def test_vllm_gets_gpus_to_match_its_tensor_parallelism() -> None:
    (c,) = containers(by_kind("Deployment")["vllm"])
    res = c["resources"]
    tp = int(next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--tensor-parallel-size=")))
    assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == tp
    assert c["command"][:2] == ["/bin/sh", "-c"] and "exec vllm serve" in c["command"][2]  # key check first
    assert "--enable-prefix-caching" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


def test_every_container_has_requests_and_limits() -> None:
    for dep in by_kind("Deployment").values():
        for c in containers(dep):
            assert c["resources"]["requests"] and c["resources"]["limits"], dep["metadata"]["name"]
            assert "memory" in c["resources"]["limits"], dep["metadata"]["name"]


def _inline_keys(env: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in env if re.search(r"KEY|TOKEN", e["name"]) and "valueFrom" not in e]


def test_keys_come_from_the_secret_never_inline() -> None:
    secret_keys = set(generated_secret()["stringData"])
    for dep in by_kind("Deployment").values():
        for c in containers(dep):
            assert _inline_keys(c.get("env", [])) == [], dep["metadata"]["name"]
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "sotrag-keys" and ref["key"] in secret_keys, e
    assert _inline_keys([{"name": "SOTRAG_API_KEY", "value": "hunter2"}]) == ["SOTRAG_API_KEY"]  # the check bites


# -- docker compose ------------------------------------------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    proc = check_compose(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["sotrag"].update(envfile="secrets.env"),  # misspelt key
        lambda c: c["services"]["sotrag"]["depends_on"]["vllm"].update(condition="when_ready"),  # not an option
        lambda c: c.update(volumes=["sotrag-index"]),  # a list where a mapping belongs
    ],
)
def test_a_broken_compose_file_is_rejected(breakage: Any, tmp_path: Path) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    breakage(compose)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    proc = check_compose(broken)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Schema validation errors" in proc.stdout + proc.stderr


def test_compose_wiring() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    vllm, sotrag = compose["services"]["vllm"], compose["services"]["sotrag"]
    assert vllm["entrypoint"][:2] == ["/bin/sh", "-c"] and "exec vllm serve" in vllm["entrypoint"][2]
    assert "--port=8000" in vllm["command"]
    assert json.loads(sotrag["environment"]["SOTRAG_ENGINE__URLS"]) == ["http://vllm:8000/v1"]
    assert sotrag["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "sotrag-index:/data/index" in sotrag["volumes"] and "sotrag-index" in compose["volumes"]
    assert any(d["capabilities"] == ["gpu"] for d in vllm["deploy"]["resources"]["reservations"]["devices"])
    assert "/readyz" in " ".join(sotrag["healthcheck"]["test"])
    assert sotrag["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / sotrag["build"]["context"] / sotrag["build"]["dockerfile"]).is_file()
    example_keys = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"SOTRAG_API_KEY", "SOTRAG_ADMIN_API_KEY", "VLLM_API_KEY", "SOTRAG_ENGINE__API_KEY"} <= example_keys
    for service in (vllm, sotrag):
        assert [f["path"] for f in service["env_file"]] == ["./secrets.env"] and service["env_file"][0]["required"]
        inline = [k for k in service.get("environment", {}) if re.search(r"KEY|TOKEN", k)]
        assert inline == []


# -- Prometheus ---------------------------------------------------------------------------------------------------

PROMETHEUS_FILES = [DEPLOY / "prometheus.yml", K8S / "prometheus.yml"]


@pytest.mark.parametrize("path", PROMETHEUS_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_prometheus_config_is_valid_and_scrapes_both(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    prometheus_validator().validate(config)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"sotrag", "vllm"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    # sotrag's /metrics wants the API key: the token file is named after the key the Secret holds
    credentials = jobs["sotrag"]["authorization"]["credentials_file"]
    assert Path(credentials).name in generated_secret()["stringData"]
    assert "authorization" not in jobs["vllm"]


def test_k8s_scrape_jobs_match_the_services() -> None:
    """The keep rules select on the Service's name label and port name: check they match the manifests."""
    config = yaml.safe_load((K8S / "prometheus.yml").read_text())
    services = by_kind("Service")
    for job in config["scrape_configs"]:
        (keep,) = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        matched = []
        for svc in services.values():
            values = {
                "__meta_kubernetes_service_label_app_kubernetes_io_name": svc["metadata"]["labels"][
                    "app.kubernetes.io/name"
                ],
                "__meta_kubernetes_endpoint_port_name": svc["spec"]["ports"][0]["name"],
            }
            joined = ";".join(values[label] for label in keep["source_labels"])
            if re.fullmatch(keep["regex"], joined):
                matched.append(svc["metadata"]["name"])
        assert matched, job["job_name"]
        assert all(m.startswith(job["job_name"]) for m in matched), (job["job_name"], matched)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["scrape_configs"][0].update(metric_path="/metrics"),  # misspelt key
        lambda c: c["scrape_configs"][1]["static_configs"][0].update(targets=["http://vllm:8000/metrics"]),
        lambda c: c["global"].update(scrape_interval="15 seconds"),
        lambda c: c["scrape_configs"][0].pop("job_name"),
    ],
)
def test_a_broken_prometheus_config_is_rejected(breakage: Any) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    validator = prometheus_validator()
    validator.validate(config)
    breakage(config)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(config)


# -- the sotrag image ----------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_cpu_image_without_vllm() -> None:
    """sotrag in front of remote vLLM servers needs neither vLLM nor CUDA (docs/DEPLOY.md)."""
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line for line in re.sub(r"\\\n", " ", text).splitlines() if line and not line.startswith("#")]
    pip_installs = [line for line in instructions if line.startswith("RUN") and "pip install" in line]
    assert pip_installs and not any(re.search(r"vllm|\[(cpu|gpu)", line) for line in pip_installs)
    assert any("torch==" in line and "--index-url" in line for line in pip_installs)  # the CPU wheel, first
    assert pip_installs.index(next(x for x in pip_installs if "torch==" in x)) == 0
    assert f"EXPOSE {SOTRAG_PORT}" in instructions
    assert any(line.startswith("USER") and "root" not in line and line.split()[1] != "0" for line in instructions)
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in instructions)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "deploy/secrets.env" in ignore and "**/.venv" in ignore
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"(vllm|torch)\b", d)]  # they come from extras or the Dockerfile only
