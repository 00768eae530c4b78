"""Deployment files, validated offline: no Docker engine, no cluster, no network needed.

- compose.yaml and compose.cpu.yaml: against the Compose Specification JSON schema (always; the copy
  in tests/schemas/compose-spec.json is the one Debian's docker-compose 1.29.2 ships, profiles
  included), then `docker-compose config` when that program is installed, then what the issue asks
  of each service.
- deploy/kubernetes: every manifest named in kustomization.yaml against the Kubernetes OpenAPI
  schemas bundled in the PyPI package kubernetes-validate (strict: unknown fields fail), then the
  wiring (GPU requests, readiness on Triton's endpoint, HPA metrics the adapter rules produce).
- Dockerfile: pinned bases, non-root gateway; Prometheus and Grafana files parse and agree.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_FILES = ["compose.yaml", "compose.cpu.yaml"]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def manifests() -> list[tuple[str, dict]]:
    kustomization = load(KUBERNETES / "kustomization.yaml")
    return [(name, doc) for name in kustomization["resources"]
            for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def by_kind(kind: str, name: str) -> dict:
    return next(doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name)


# --- compose -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_the_compose_spec(name):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(load(ROOT / name))


def test_the_compose_schema_check_is_live():
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    broken = load(ROOT / "compose.yaml")
    broken["services"]["triton"]["shm_sise"] = "2gb"
    with pytest.raises(jsonschema.ValidationError, match="shm_sise"):
        jsonschema.Draft201909Validator(schema).validate(broken)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_config_accepts_it(name, tmp_path):
    for profile in ([], ["--profile", "monitoring"]):
        result = subprocess.run(["docker-compose", "-f", str(ROOT / name), *profile, "config", "-q"],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 0, result.stderr


def placed_and_served(script: str) -> bool:
    """Triton serves the build as `trident place` wrote it for the host: its engine on every GPU it sees."""
    place, serve = script.split("&&")
    return (place.split() == ["trident", "place", "/models/repository", "--out", "/tmp/placed", "--gpus", "all"]
            and serve.split()[:3] == ["exec", "tritonserver", "--model-repository=/tmp/placed"])


def test_gpu_compose_stack():
    services = load(ROOT / "compose.yaml")["services"]
    assert set(services) == {"builder", "triton", "gateway", "prometheus", "grafana"}
    assert services["builder"]["build"]["target"] == "builder" and services["builder"]["restart"] == "no"
    assert "models:/models" in services["builder"]["volumes"]
    triton = services["triton"]
    assert placed_and_served(" ".join(triton["command"]))
    assert triton["depends_on"]["builder"]["condition"] == "service_completed_successfully"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"]) and triton["shm_size"]
    device = triton["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    gateway = services["gateway"]
    assert gateway["command"] == ["--triton-url", "triton:8001"]
    assert "/health" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]


def test_cpu_compose_stack_needs_no_gpu():
    services = load(ROOT / "compose.cpu.yaml")["services"]
    assert services["trident"]["build"]["target"] == "cpu"
    assert not any("deploy" in service for service in services.values())  # no device reservation
    assert "/health" in " ".join(services["trident"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_image_is_pinned_and_every_mounted_file_exists(name):
    for service in load(ROOT / name)["services"].values():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), image
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_dockerfile_bases_are_pinned_and_the_gateway_is_not_root():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:\d+\.\d+-py3$", text, re.MULTILINE)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+\.\d+-slim-\w+$", text, re.MULTILINE)
    stages = dict(re.findall(r"^FROM (\S+) AS (\w+)$", text, re.MULTILINE)[i][::-1] for i in range(5))
    assert set(stages) == {"source", "gateway", "triton", "builder", "cpu"}
    assert stages["builder"] == "triton"  # the engine is built in the NGC image, with TensorRT
    gateway = text.split("AS gateway")[1].split("\nFROM ")[0]
    assert "USER 10001" in gateway and "onnxruntime" not in gateway and "torch" not in gateway


def test_monitoring_files_agree():
    scraped = {t for job in load(ROOT / "deploy/prometheus/prometheus.yml")["scrape_configs"]
               for c in job["static_configs"] for t in c["targets"]}
    assert scraped == {"gateway:8080", "triton:8002"}
    datasource = load(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml")["datasources"][0]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/trident.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert all(t["datasource"]["uid"] == datasource["uid"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("trident_requests_total", "trident_request_duration_seconds_bucket", "trident_requests_in_flight",
                   "trident_triton_endpoint_up", "nv_inference_queue_duration_us", "nv_inference_request_success"):
        assert metric in exprs


# --- Kubernetes --------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    listed = set(load(KUBERNETES / "kustomization.yaml")["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", "prometheus-adapter-values.yaml"}
    assert listed == present


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_matches_the_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_schema_check_is_live():
    broken = json.loads(json.dumps(by_kind("Deployment", "triton")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_triton_gets_a_gpu_and_is_ready_when_triton_says_so():
    pod = by_kind("Deployment", "triton")["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["command"][:2] == ["/bin/sh", "-c"] and placed_and_served(triton["command"][2])
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {by_kind("PersistentVolumeClaim", "trident-models")["metadata"]["name"]}
    assert by_kind("Service", "triton")["spec"]["clusterIP"] == "None"  # every pod's address, for round-robin


def test_gateway_points_at_the_triton_service_and_runs_as_non_root():
    pod = by_kind("Deployment", "trident-gateway")["spec"]["template"]["spec"]
    gateway = pod["containers"][0]
    assert gateway["args"] == ["--triton-url", "dns:///triton:8001"]
    assert pod["securityContext"]["runAsNonRoot"] and gateway["securityContext"]["readOnlyRootFilesystem"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health"
    assert by_kind("Service", "trident-gateway")["spec"]["selector"] == by_kind(
        "Deployment", "trident-gateway")["spec"]["selector"]["matchLabels"]


def test_autoscalers_read_metrics_the_adapter_rules_define():
    rules = load(KUBERNETES / "prometheus-adapter-values.yaml")["rules"]["custom"]
    served = {rule["name"]["as"] for rule in rules}
    for target in ("trident-gateway", "triton"):
        hpa = by_kind("HorizontalPodAutoscaler", target)
        assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind("Deployment", target)["metadata"]["name"]
        assert {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]} <= served
