"""deploy/kubernetes: every manifest parses, validates against the Kubernetes schemas, and keeps the promises
of deploy/kubernetes/README.md (probes, shutdown, scaling, security, where settings and secrets come from)."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from teckochecker.config import ENVIRONMENT_KEYS, load_settings
from teckochecker.vault import generate_key
from tests.deploy.conftest import DEPLOY_DIR

K8S_DIR = DEPLOY_DIR / "kubernetes"
# The newest Kubernetes version whose schemas kubernetes-validate bundles.
KUBERNETES_VERSION = latest_version()
KUSTOMIZATION = "kustomization.yaml"
EXAMPLE_FILES = frozenset({"secret.example.yaml", "postgres.example.yaml"})
NAMESPACE = "teckochecker"
IMAGE_NAME = "teckochecker"
CLI = ("python", "/app/cli.py")
APP_UID = 10001
SECRET_SETTINGS = frozenset({"DATABASE_URL", "SECRET_KEY", "API_TOKEN", "FLOWER_BASIC_AUTH"})
# Environment variables a container may set that are not TeckoChecker settings.
OTHER_ENVIRONMENT = frozenset({"PYTHONUNBUFFERED"})
TASK_HARD_TIME_LIMIT = 300
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "Job"})
# Credentials written into a URL: scheme://user:password@host
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@]*:[^\s/@]+@", re.IGNORECASE)


@dataclass(frozen=True)
class Manifest:
    file: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        metadata = self.obj["metadata"]
        return metadata.get("name") or metadata["generateName"]

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"


def manifest_files() -> list[str]:
    return sorted(path.name for path in K8S_DIR.glob("*.yaml"))


@functools.cache
def load_file(name: str) -> tuple[dict[str, Any], ...]:
    with (K8S_DIR / name).open() as stream:
        return tuple(document for document in yaml.safe_load_all(stream) if document is not None)


@functools.cache
def all_manifests() -> tuple[Manifest, ...]:
    return tuple(
        Manifest(name, document) for name in manifest_files() if name != KUSTOMIZATION for document in load_file(name)
    )


def find(kind: str, name: str) -> Manifest:
    matches = [m for m in all_manifests() if m.kind == kind and m.name == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(*, include_examples: bool = True) -> list[Manifest]:
    return [
        m for m in all_manifests() if m.kind in WORKLOAD_KINDS and (include_examples or m.file not in EXAMPLE_FILES)
    ]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return workload.obj["spec"]["template"]["spec"]


def all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(workload: Manifest, name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def is_app_image(image: str) -> bool:
    return image.rsplit(":", 1)[0] == IMAGE_NAME


def app_containers() -> Iterator[tuple[Manifest, dict[str, Any]]]:
    for workload in workloads():
        for c in all_containers(pod_spec(workload)):
            if is_app_image(c["image"]):
                yield workload, c


def named_port(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    return number


def exec_cli_arguments(probe: dict[str, Any]) -> list[str]:
    command = probe["exec"]["command"]
    assert tuple(command[:2]) == CLI, f"probe command {command} does not run the CLI as the image does"
    return command[2:]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- the files and the schemas ---------------------------------------------------------------------------------


def test_the_folder_has_the_expected_manifests() -> None:
    expected = {
        "namespace.yaml",
        "configmap.yaml",
        "secret.example.yaml",
        "migrate-job.yaml",
        "api.yaml",
        "worker.yaml",
        "beat.yaml",
        "flower.yaml",
        "redis.yaml",
        "postgres.example.yaml",
        KUSTOMIZATION,
    }
    assert set(manifest_files()) == expected
    assert (K8S_DIR / "README.md").is_file()


@pytest.mark.parametrize("name", manifest_files())
def test_every_manifest_parses_into_kubernetes_objects(name: str) -> None:
    documents = load_file(name)
    assert documents, f"{name} holds no object"
    for document in documents:
        assert isinstance(document, dict), f"{name}: a document is not a mapping"
        assert {"apiVersion", "kind"} <= document.keys(), f"{name}: an object lacks apiVersion or kind"
        if document["kind"] != "Kustomization":
            metadata = document.get("metadata") or {}
            assert metadata.get("name") or metadata.get("generateName"), f"{name}: a {document['kind']} has no name"


@pytest.mark.parametrize("name", [name for name in manifest_files() if name != KUSTOMIZATION])
def test_every_object_validates_against_the_kubernetes_schema(name: str) -> None:
    errors = []
    for document in load_file(name):
        label = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"{label}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{label}: {exc.message}")
    assert errors == [], f"{name} does not validate against Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(errors)


def test_the_schema_check_rejects_unknown_fields() -> None:
    """The validation above is strict: a misspelt field (silently dropped by older kubectl) is an error."""
    deployment = copy.deepcopy(find("Deployment", "teckochecker-worker").obj)
    deployment["spec"]["template"]["spec"]["containers"][0]["terminationGracePeriod"] = 360
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_namespaced_object_is_in_the_teckochecker_namespace() -> None:
    for manifest in all_manifests():
        if manifest.kind == "Namespace":
            assert manifest.name == NAMESPACE
        else:
            assert manifest.obj["metadata"].get("namespace") == NAMESPACE, str(manifest)


def test_object_names_are_unique() -> None:
    keys = [(m.kind, m.name) for m in all_manifests()]
    assert len(keys) == len(set(keys)), sorted(key for key in keys if keys.count(key) > 1)


# --- kustomize --------------------------------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    (document,) = load_file(KUSTOMIZATION)
    return document


def test_the_kustomization_lists_every_manifest_but_the_examples_and_the_job() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    expected = set(manifest_files()) - EXAMPLE_FILES - {KUSTOMIZATION, "migrate-job.yaml"}
    assert set(resources) == expected
    assert kustomization()["namespace"] == NAMESPACE


def test_the_image_is_set_in_one_place_and_used_everywhere() -> None:
    (image,) = [entry for entry in kustomization()["images"] if entry["name"] == IMAGE_NAME]
    configured = f"{image.get('newName', IMAGE_NAME)}:{image.get('newTag', 'latest')}"
    used = {c["image"] for _, c in app_containers()}
    # The Job is not built by kustomize, so it must name the same image as the kustomization sets.
    assert used == {configured}, f"containers use {used}, kustomization.yaml sets {configured}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_valid_objects() -> None:
    completed = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    built = [document for document in yaml.safe_load_all(completed.stdout) if document]
    names = {(d["kind"], d["metadata"]["name"]) for d in built}
    assert ("Deployment", "teckochecker-worker") in names
    assert ("HorizontalPodAutoscaler", "teckochecker-worker") in names
    assert not any(d["kind"] == "Secret" for d in built), "the kustomization must not ship a Secret"
    for document in built:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == NAMESPACE


# --- settings and secrets ---------------------------------------------------------------------------------------


def config_map() -> dict[str, str]:
    return find("ConfigMap", "teckochecker-config").obj["data"]


def test_the_configmap_holds_settings_the_application_reads_and_no_secret() -> None:
    data = config_map()
    unknown = set(data) - set(ENVIRONMENT_KEYS) - OTHER_ENVIRONMENT
    assert unknown == set(), f"not TeckoChecker settings (misspelt?): {sorted(unknown)}"
    assert SECRET_SETTINGS.isdisjoint(data), "secrets belong in a Secret"
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    for key in ("REDIS_URL", "LOG_LEVEL", "LOG_FORMAT", "OPENAI_BASE_URL", "KEBOOLA_ALLOWED_HOSTS", "CORS_ORIGINS"):
        assert key in data
    # The values are ones TeckoChecker accepts: a malformed value would stop every container at start.
    settings = load_settings({**data, "SECRET_KEY": generate_key(), "API_TOKEN": "x" * 32}, env_file=None)
    assert settings.redis_url is not None
    assert settings.log_format in {"text", "json"}


def test_redis_url_points_at_the_redis_service() -> None:
    service = find("Service", "teckochecker-redis").obj
    port = service["spec"]["ports"][0]["port"]
    assert config_map()["REDIS_URL"].startswith(f"redis://teckochecker-redis:{port}/")


def test_container_environment_names_are_settings() -> None:
    for workload, c in app_containers():
        names = {entry["name"] for entry in c.get("env", [])}
        unknown = names - set(ENVIRONMENT_KEYS) - OTHER_ENVIRONMENT
        assert unknown == set(), f"{workload} {c['name']}: {sorted(unknown)}"


def referenced_sources(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod reads through envFrom, env or volumes."""
    for c in all_containers(spec):
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"]
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"]
        for entry in c.get("env", []):
            value_from = entry.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                yield "ConfigMap", value_from["configMapKeyRef"]["name"]
            if "secretKeyRef" in value_from:
                yield "Secret", value_from["secretKeyRef"]["name"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]


def test_every_referenced_configmap_and_secret_exists_in_the_manifests() -> None:
    defined = {(m.kind, m.name) for m in all_manifests() if m.kind in {"ConfigMap", "Secret"}}
    for workload in workloads():
        for reference in referenced_sources(pod_spec(workload)):
            assert reference in defined, f"{workload} reads {reference[0]} {reference[1]}, defined nowhere"


def test_app_containers_read_the_configmap_then_a_secret() -> None:
    """A key in the Secret overrides the ConfigMap (with envFrom the later source wins): a REDIS_URL with a password."""
    for workload, c in app_containers():
        sources = [next(iter(source)) for source in c.get("envFrom", [])]
        assert sources == ["configMapRef", "secretRef"], f"{workload} {c['name']}: envFrom {sources}"
        assert c["envFrom"][0]["configMapRef"]["name"] == "teckochecker-config"


def test_flower_alone_reads_the_flower_secret() -> None:
    for workload, c in app_containers():
        secret = c["envFrom"][1]["secretRef"]["name"]
        expected = "teckochecker-flower-auth" if workload.name == "teckochecker-flower" else "teckochecker-secrets"
        assert secret == expected, f"{workload} {c['name']} reads {secret}"


def test_the_example_secrets_name_every_secret_setting_with_placeholders() -> None:
    keys: set[str] = set()
    for manifest in all_manifests():
        if manifest.file == "secret.example.yaml":
            assert manifest.kind == "Secret"
            assert "data" not in manifest.obj, "use stringData: base64 placeholders hide what to replace"
            for key, value in manifest.obj["stringData"].items():
                keys.add(key)
                assert "REPLACE_ME" in value, f"{manifest} {key} is not an obvious placeholder"
    assert keys == SECRET_SETTINGS


def test_no_secret_value_is_written_into_a_non_example_manifest() -> None:
    for manifest in all_manifests():
        if manifest.file in EXAMPLE_FILES:
            continue
        assert manifest.kind != "Secret", f"{manifest}: Secrets belong in secret.example.yaml only"
    for name in manifest_files():
        if name not in EXAMPLE_FILES:
            # The whole text, comments included: a credential in a comment is as public as one in a value.
            match = URL_WITH_PASSWORD.search((K8S_DIR / name).read_text())
            assert match is None, f"{name} contains a URL with a password: {match and match.group(0)}"
    for workload in workloads(include_examples=False):
        for c in all_containers(pod_spec(workload)):
            for entry in c.get("env", []):
                assert entry["name"] not in SECRET_SETTINGS or "value" not in entry, (
                    f"{workload} {c['name']} sets {entry['name']} literally"
                )


# --- workloads: resources, security, probes ---------------------------------------------------------------------


def test_every_container_has_cpu_and_memory_requests_and_limits() -> None:
    for workload in workloads():
        for c in all_containers(pod_spec(workload)):
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{workload} {c['name']}: {bound}"


def test_every_pod_runs_as_non_root_with_no_privileges() -> None:
    for workload in workloads():
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, str(workload)
        assert pod_security["runAsUser"] != 0, str(workload)
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", str(workload)
        assert spec.get("automountServiceAccountToken") is False, str(workload)
        mounted_volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in all_containers(spec):
            security = c["securityContext"]
            where = f"{workload} {c['name']}"
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in security["capabilities"], where
            assert security.get("privileged") is not True, where
            assert security["readOnlyRootFilesystem"] is True, where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"
            tmp_volume = mounted_volumes[mounts["/tmp"]]
            assert "emptyDir" in tmp_volume, f"{where}: /tmp should be an emptyDir"


def test_teckochecker_pods_run_as_the_image_user() -> None:
    for workload in workloads():
        if any(is_app_image(c["image"]) for c in all_containers(pod_spec(workload))):
            security = pod_spec(workload)["securityContext"]
            assert security["runAsUser"] == APP_UID, str(workload)
            assert security["runAsGroup"] == APP_UID, str(workload)


def test_container_arguments_are_real_cli_commands(usage_error: Callable[[Sequence[str]], str | None]) -> None:
    for workload, c in app_containers():
        assert "command" not in c, f"{workload} {c['name']}: the image's entrypoint is the CLI; set args only"
        assert usage_error(c["args"]) is None
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if "exec" in c.get(kind, {}):
                assert usage_error(exec_cli_arguments(c[kind])) is None


def test_api_runs_several_replicas_and_only_readiness_checks_dependencies() -> None:
    api = find("Deployment", "teckochecker-api")
    assert api.obj["spec"]["replicas"] >= 2
    c = container(api, "api")
    assert c["args"][0] == "api"
    assert c["args"][c["args"].index("--host") + 1] == "0.0.0.0"
    port = int(c["args"][c["args"].index("--port") + 1])
    readiness = c["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/api/health"
    assert named_port(c, readiness["httpGet"]["port"]) == port
    # /api/health checks the database and Redis with 3 s timeouts: the probe must wait longer.
    assert readiness["timeoutSeconds"] > 3
    # A database or Redis blip must not restart the API: liveness and startup do not call /api/health.
    for kind in ("livenessProbe", "startupProbe"):
        probe = c[kind]
        assert "tcpSocket" in probe, f"{kind} should only check that gunicorn accepts connections"
        assert named_port(c, probe["tcpSocket"]["port"]) == port
    liveness = c["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= (
        readiness["periodSeconds"] * readiness["failureThreshold"]
    )


def test_api_shuts_down_within_its_grace_period() -> None:
    api = find("Deployment", "teckochecker-api")
    c = container(api, "api")
    pause = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[:2] == ["python", "-c"], "the image has python; it may not have sleep"
    # preStop pause + gunicorn's 30 s graceful timeout must fit.
    assert pod_spec(api)["terminationGracePeriodSeconds"] >= 30 + 5


def test_api_service_and_budget_select_the_api_pods() -> None:
    api = find("Deployment", "teckochecker-api")
    labels = api.obj["spec"]["template"]["metadata"]["labels"]
    service = find("Service", "teckochecker-api").obj
    assert labels_match(service["spec"]["selector"], labels)
    (port,) = service["spec"]["ports"]
    named_port(container(api, "api"), port["targetPort"])
    budget = find("PodDisruptionBudget", "teckochecker-api").obj
    assert labels_match(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["minAvailable"] < api.obj["spec"]["replicas"]


def test_workers_outlive_the_task_hard_time_limit_when_stopped() -> None:
    worker = find("Deployment", "teckochecker-worker")
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace > TASK_HARD_TIME_LIMIT
    assert grace >= 360
    c = container(worker, "worker")
    assert c["args"][0] == "worker"
    assert "lifecycle" not in c, "SIGTERM must reach the worker at once to start its warm shutdown"


def test_worker_probes_follow_the_probe_contract() -> None:
    c = container(find("Deployment", "teckochecker-worker"), "worker")
    startup, liveness = c["startupProbe"], c["livenessProbe"]
    assert exec_cli_arguments(startup) == ["probe", "worker", "--ping"]
    assert exec_cli_arguments(liveness) == ["probe", "worker"]
    assert "readinessProbe" not in c, "a worker serves no traffic"
    # The ping waits 5 s for an answer and costs seconds of CPU: a generous timeout, and minutes to start.
    assert startup["timeoutSeconds"] >= 10
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # The heartbeat is written every 10 s and accepted up to 60 s old: probe less often than it is written.
    assert liveness["periodSeconds"] >= 10
    assert liveness["timeoutSeconds"] >= 5
    assert liveness["failureThreshold"] >= 2


def test_the_heartbeat_file_is_on_the_writable_tmp() -> None:
    worker = find("Deployment", "teckochecker-worker")
    c = container(worker, "worker")
    env = {entry["name"]: entry.get("value") for entry in c.get("env", [])}
    heartbeat = env.get("WORKER_HEARTBEAT_FILE", load_settings({}, env_file=None).worker_heartbeat_file)
    assert heartbeat.startswith("/tmp/")


def test_the_autoscaler_scales_the_worker_deployment_on_cpu() -> None:
    hpa = find("HorizontalPodAutoscaler", "teckochecker-worker").obj
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    worker = find("Deployment", target["name"])
    assert worker.name == "teckochecker-worker"
    assert "replicas" not in worker.obj["spec"], "the HPA owns the replica count; `kubectl apply` would reset it"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container(worker, "worker")["resources"]["requests"], "CPU utilisation needs a CPU request"
    # Scaling down drains a pod for up to its grace period: never faster than one pod at a time.
    scale_down = hpa["spec"]["behavior"]["scaleDown"]
    assert all(policy["type"] == "Pods" and policy["value"] == 1 for policy in scale_down["policies"])


def test_the_worker_budget_selects_the_worker_pods() -> None:
    worker = find("Deployment", "teckochecker-worker")
    budget = find("PodDisruptionBudget", "teckochecker-worker").obj
    assert labels_match(budget["spec"]["selector"]["matchLabels"], worker.obj["spec"]["template"]["metadata"]["labels"])


def test_beat_is_a_single_replica_recreated_on_rollout() -> None:
    beat = find("Deployment", "teckochecker-beat")
    assert beat.obj["spec"]["replicas"] == 1
    assert beat.obj["spec"]["strategy"]["type"] == "Recreate"
    assert container(beat, "beat")["args"] == ["beat"]
    assert not any(
        m.kind == "HorizontalPodAutoscaler" and m.obj["spec"]["scaleTargetRef"]["name"] == beat.name
        for m in all_manifests()
    )


def test_flower_listens_with_basic_auth_behind_a_service() -> None:
    flower = find("Deployment", "teckochecker-flower")
    c = container(flower, "flower")
    assert c["args"][0] == "flower"
    port = int(c["args"][c["args"].index("--port") + 1])
    for kind in ("readinessProbe", "livenessProbe"):
        assert c[kind]["httpGet"]["path"] == "/healthcheck"
        assert named_port(c, c[kind]["httpGet"]["port"]) == port
    service = find("Service", "teckochecker-flower").obj
    assert labels_match(service["spec"]["selector"], flower.obj["spec"]["template"]["metadata"]["labels"])
    assert service["spec"]["type"] == "ClusterIP", "Flower can shut workers down: keep it internal"
    (secret,) = [m for m in all_manifests() if m.kind == "Secret" and m.name == "teckochecker-flower-auth"]
    assert set(secret.obj["stringData"]) == {"FLOWER_BASIC_AUTH"}


def test_long_running_containers_have_the_probes_they_need() -> None:
    required = {
        "teckochecker-api": {"readinessProbe", "livenessProbe"},
        "teckochecker-worker": {"startupProbe", "livenessProbe"},
        "teckochecker-flower": {"readinessProbe", "livenessProbe"},
        "teckochecker-redis": {"readinessProbe", "livenessProbe"},
        "teckochecker-postgres": {"readinessProbe", "livenessProbe"},
        # Beat has no probe command yet (see beat.yaml).
        "teckochecker-beat": set(),
    }
    services = [w for w in workloads() if w.kind != "Job"]
    assert {w.name for w in services} == set(required)
    for workload in services:
        for c in pod_spec(workload)["containers"]:
            assert required[workload.name] <= set(c), f"{workload} {c['name']} lacks a probe"


def test_the_schema_is_migrated_before_the_engine_and_api_start() -> None:
    for name in ("teckochecker-api", "teckochecker-worker", "teckochecker-beat"):
        deployment = find("Deployment", name)
        init = pod_spec(deployment).get("initContainers", [])
        assert [c["args"] for c in init] == [["db", "init"]], f"{name} must run `db init` before it starts"
    (job,) = [m for m in all_manifests() if m.kind == "Job"]
    assert job.obj["metadata"]["generateName"] == "teckochecker-migrate-"
    (c,) = pod_spec(job)["containers"]
    assert c["args"] == ["db", "init"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job.obj["spec"]["backoffLimit"] >= 1


def test_prometheus_scrapes_the_port_each_role_serves_metrics_on() -> None:
    expected = {"teckochecker-api": 8000, "teckochecker-worker": 9808, "teckochecker-beat": 9808}
    for name, port in expected.items():
        deployment = find("Deployment", name)
        annotations = deployment.obj["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
        (c,) = pod_spec(deployment)["containers"]
        assert port in {p["containerPort"] for p in c["ports"]}
        env = {entry["name"]: entry.get("value") for entry in c.get("env", [])}
        if name != "teckochecker-api":
            assert env["METRICS_PORT"] == str(port), f"{name} must be told to serve metrics on {port}"
            assert env["METRICS_HOST"] == "0.0.0.0", f"{name} must open its metrics port to the scraper"
        else:
            assert "METRICS_PORT" not in env, "the API serves /metrics on its own port"
    assert "METRICS_PORT" not in config_map(), "set per role, not for every container"


def test_redis_is_one_persistent_primary_that_never_evicts() -> None:
    redis = find("StatefulSet", "teckochecker-redis")
    assert redis.obj["spec"]["replicas"] == 1
    (c,) = pod_spec(redis)["containers"]
    args = c["args"]
    option = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    assert option["--maxmemory-policy"] == "noeviction"
    assert option["--appendonly"] == "yes"
    (claim,) = redis.obj["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": option["--dir"]} in c["volumeMounts"]
    service = find("Service", "teckochecker-redis").obj
    assert labels_match(service["spec"]["selector"], redis.obj["spec"]["template"]["metadata"]["labels"])
    policy = find("NetworkPolicy", "teckochecker-redis").obj
    assert labels_match(
        policy["spec"]["podSelector"]["matchLabels"], redis.obj["spec"]["template"]["metadata"]["labels"]
    )


def test_every_teckochecker_pod_may_reach_redis() -> None:
    policy = find("NetworkPolicy", "teckochecker-redis").obj
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    for workload, _ in app_containers():
        labels = workload.obj["spec"]["template"]["metadata"]["labels"]
        assert labels_match(peer["podSelector"]["matchLabels"], labels), f"{workload} could not reach Redis"


def test_the_namespace_enforces_the_restricted_pod_security_profile() -> None:
    labels = find("Namespace", NAMESPACE).obj["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
