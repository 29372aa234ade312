"""Kubernetes manifests from models.toml: Triton as a Deployment (repository from S3 or from a PVC) with the gateway
beside it in each pod, their Services, a NetworkPolicy that keeps Triton's own ports away from everyone but the
gateway and Prometheus, a PodDisruptionBudget and an autoscaling/v2 HorizontalPodAutoscaler on the weighted queue
time served by prometheus-adapter; a ServiceMonitor and a PrometheusRule with the alert rules; KServe's
ServingRuntime and InferenceService as the alternative; distributed Locust. Plain dicts, validated by
tests/operate/test_k8s.py."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from core import promql
from core.spec import Spec
from core.triton import ADMIN_KEY_ENV, serving_flags
from operate import rules

# tritonserver 2.51's own pattern for an S3 repository on a custom endpoint (from the strings of libtritonserver.so).
S3_URL = re.compile(r"^s3://(http://|https://|)([0-9a-zA-Z\-.]+):([0-9]+)/([0-9a-z.\-]+)(((/[0-9a-zA-Z.\-_]+)*)?)$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME = "modelport-triton"  # Deployment, Service and the ServiceMonitor's job label: promql.TRITON_JOB
ADAPTER_METRIC = "modelport_queue_us_per_request"
EXIT_TIMEOUT_S = 20  # in-flight requests get this long on SIGTERM; terminationGracePeriodSeconds leaves room for it
UID = 1000  # triton.Dockerfile's `triton-server` user
PORTS = (("http", 8000), ("grpc", 8001), ("metrics", 8002))
GATEWAY = "modelport-gateway"  # its Service; the container is `gateway` in Triton's pod
GATEWAY_PORT = ("gateway", 8080)
# Prometheus operator's pods carry this label; NetworkPolicy peers are pods, so the rule names them and their namespace.
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}
MODELS_MOUNT = "/models"
PROBE_PERIOD_S = 5
# A GPU node does more at load than the CPU host that measured: the ONNX Runtime TensorRT accelerator builds engines
# on first load. Budget STARTUP_FACTOR times the measurement, plus the repository download, and never less than the
# image's HEALTHCHECK start period (triton.Dockerfile).
STARTUP_FACTOR = 10
DOWNLOAD_ALLOWANCE_S = 60
MIN_STARTUP_S = 120


@dataclasses.dataclass(frozen=True)
class Measured:
    """Triton's load + warmup time for the whole repository, measured here by `python -m operate measure`."""

    startup_s: float
    models: int
    where: str

    @classmethod
    def read(cls, path: Path) -> Measured:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"{path} holds no startup measurement ({error}): run `python -m operate measure`") from None

    def startup_budget_s(self) -> int:
        return max(MIN_STARTUP_S, math.ceil(STARTUP_FACTOR * self.startup_s + DOWNLOAD_ALLOWANCE_S))


@dataclasses.dataclass(frozen=True)
class Cluster:
    namespace: str = "modelport"
    image: str = "modelport-triton:latest"  # `make docker-build` (triton.Dockerfile)
    gateway_image: str = "modelport-gateway:latest"  # deploy/k8s/gateway.Dockerfile
    prometheus_namespace: str = "monitoring"  # where the Prometheus that scrapes Triton runs
    loadtest_image: str = "modelport-loadtest:latest"  # deploy/k8s/loadtest.Dockerfile
    s3_repository: str = "s3://object-store.modelport.svc:9000/models/model_repository"
    s3_region: str = "us-east-1"
    pvc_size: str = "1Gi"
    replicas: int = 2
    max_replicas: int = 8
    gpus: int = 1
    locust_workers: int = 2

    def __post_init__(self) -> None:
        for name in ("namespace", "prometheus_namespace"):
            if not DNS_LABEL.match(getattr(self, name)):
                raise ValueError(f"Cluster.{name} must be a DNS label (lowercase letters, digits, '-'), "
                                 f"got {getattr(self, name)!r}")
        if not S3_URL.match(self.s3_repository):
            raise ValueError(f"Cluster.s3_repository must be s3://host:port/bucket/path as Triton parses it, got "
                             f"{self.s3_repository!r}")
        if not 1 <= self.replicas <= self.max_replicas or self.gpus < 0 or self.locust_workers < 1:
            raise ValueError(f"need 1 <= replicas ({self.replicas}) <= max_replicas ({self.max_replicas}), gpus >= 0 "
                             f"({self.gpus}) and locust_workers >= 1 ({self.locust_workers})")

    @property
    def s3_parts(self) -> tuple[str, str]:
        """(endpoint host:port, bucket/path) of s3_repository."""
        match = S3_URL.match(self.s3_repository)
        return f"{match[2]}:{match[3]}", f"{match[4]}{match[5]}"


def triton_args(repository: str) -> list[str]:
    """tritonserver's command line in the manifests; `$(VAR)` is expanded by the kubelet from the container's env.
    tests/operate/test_s3_repository.py runs exactly these against a local S3 endpoint."""
    return ["tritonserver", *serving_flags(repository, f"$({ADMIN_KEY_ENV})", EXIT_TIMEOUT_S)]


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """The kubelet's `$(VAR)` expansion (a reference to an undefined variable stays as written)."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg) for arg in args]


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "modelport"}


def meta(name: str, cluster: Cluster, component: str | None = None, **extra) -> dict:
    return {"name": name, "namespace": cluster.namespace, "labels": labels(component or name), **extra}


def secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def probes(port: str, measured: Measured) -> dict:
    def get(path: str) -> dict:
        return {"httpGet": {"path": path, "port": port}}

    return {
        "startupProbe": {**get("/v2/health/ready"), "periodSeconds": PROBE_PERIOD_S,
                         "failureThreshold": math.ceil(measured.startup_budget_s() / PROBE_PERIOD_S)},
        "readinessProbe": {**get("/v2/health/ready"), "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**get("/v2/health/live"), "periodSeconds": 10, "failureThreshold": 3},
    }


def container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def resources(cluster: Cluster) -> dict:
    limits = {"memory": "8Gi", **({"nvidia.com/gpu": str(cluster.gpus)} if cluster.gpus else {})}
    return {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": limits}


def scratch_volumes() -> tuple[list[dict], list[dict]]:
    """A read-only root file system still needs /tmp (S3 downloads, engine caches) and /dev/shm (the python
    backend's shared memory with its stubs)."""
    volumes = [{"name": "tmp", "emptyDir": {}}, {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}]
    return volumes, mounts


def triton_container(cluster: Cluster, measured: Measured, repository: str, env: list[dict],
                     mounts: list[dict], ports=PORTS, extra_args=()) -> dict:
    return {
        "name": "triton", "image": cluster.image, "imagePullPolicy": "IfNotPresent",
        "command": triton_args(repository)[:1], "args": triton_args(repository)[1:] + list(extra_args),
        "ports": [{"name": name, "containerPort": number, "protocol": "TCP"} for name, number in ports],
        "env": [secret_env(ADMIN_KEY_ENV, "modelport-admin", "admin-key"), *env],
        **probes(ports[0][0], measured),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},  # let endpoints drop the pod first
        "resources": resources(cluster), "securityContext": container_security(), "volumeMounts": mounts,
    }


def gateway_container(cluster: Cluster) -> dict:
    """The gateway, the pod's public edge: it calls Triton's gRPC port over the pod's loopback, so Triton's own ports
    need no peer but Prometheus (network_policy). Its API key comes from the `modelport-gateway` Secret."""
    name, port = GATEWAY_PORT
    return {
        "name": "gateway", "image": cluster.gateway_image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "gateway", "run"],
        "args": ["--host", "0.0.0.0", "--port", str(port), "--triton", f"127.0.0.1:{dict(PORTS)['grpc']}",
                 "--state-dir", "/tmp/gateway"],
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"}],
        "env": [secret_env("MODELPORT_API_KEY", GATEWAY, "api-key")],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": name}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": name}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "gateway-tmp", "mountPath": "/tmp"}],
    }


def deployment(cluster: Cluster, measured: Measured, storage: str) -> dict:
    """storage "s3": the repository from object storage, credentials from the `modelport-s3` Secret;
    storage "pvc": from the `modelport-model-repository` claim, mounted read-only. The gateway runs beside Triton."""
    volumes, mounts = scratch_volumes()
    if storage == "s3":
        repository = cluster.s3_repository
        env = [secret_env("AWS_ACCESS_KEY_ID", "modelport-s3", "access-key-id"),
               secret_env("AWS_SECRET_ACCESS_KEY", "modelport-s3", "secret-access-key"),
               {"name": "AWS_DEFAULT_REGION", "value": cluster.s3_region}]
    elif storage == "pvc":
        repository = MODELS_MOUNT
        env = []
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": "modelport-model-repository",
                                                                  "readOnly": True}})
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True})
    else:
        raise ValueError(f"storage must be 's3' or 'pvc', got {storage!r}")
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(NAME, cluster, annotations={"modelport/model-repository": repository}),
        "spec": {
            "replicas": cluster.replicas,
            "selector": {"matchLabels": labels(NAME)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(NAME)},
                "spec": {
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": EXIT_TIMEOUT_S + 15,
                    # Each container keeps its own PID namespace (no shareProcessNamespace): the gateway cannot read
                    # tritonserver's command line, which holds the admin key.
                    "containers": [triton_container(cluster, measured, repository, env, mounts),
                                   gateway_container(cluster)],
                    "volumes": volumes + [{"name": "gateway-tmp", "emptyDir": {}}],
                },
            },
        },
    }


def model_repository_claim(cluster: Cluster) -> dict:
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("modelport-model-repository", cluster, NAME),
        # Every replica mounts it, on any node: the storage class must offer ReadOnlyMany (NFS, CephFS, ...).
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": cluster.pvc_size}}},
    }


def service(cluster: Cluster) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(NAME, cluster),
        "spec": {"type": "ClusterIP", "selector": labels(NAME),
                 "ports": [{"name": name, "port": number, "targetPort": name, "protocol": "TCP"} for name, number in PORTS]},
    }


def gateway_service(cluster: Cluster) -> dict:
    """The public edge: the gateway container of Triton's pods."""
    name, port = GATEWAY_PORT
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(GATEWAY, cluster),
        "spec": {"type": "ClusterIP", "selector": labels(NAME),
                 "ports": [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"}]},
    }


def network_policy(cluster: Cluster) -> dict:
    """Triton 2.51's HTTP front end dies on a deeply nested JSON body, and older releases on other crafted requests
    (docs/serving-security.md): what Triton cannot survive must not reach it. Into Triton's pods come the gateway's
    port (the public edge) from anywhere and Triton's metrics port from Prometheus; Triton's HTTP and gRPC ports
    from no pod at all. The gateway reaches them over the pod's loopback, which NetworkPolicy does not filter, and
    the kubelet's probes come from the node, which NetworkPolicy always admits."""
    metrics = dict(PORTS)["metrics"]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(NAME, cluster),
        "spec": {
            "podSelector": {"matchLabels": labels(NAME)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": GATEWAY_PORT[1]}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cluster.prometheus_namespace}},
                           "podSelector": {"matchLabels": PROMETHEUS_POD}}],
                 "ports": [{"protocol": "TCP", "port": metrics}]},
            ],
        },
    }


def disruption_budget(cluster: Cluster) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(NAME, cluster),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels(NAME)}}}


def autoscaler(cluster: Cluster, budgets: rules.Budgets) -> dict:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(NAME, cluster),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": cluster.replicas, "maxReplicas": cluster.max_replicas,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": ADAPTER_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(budgets.queue_us_target)},
            }}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
            },
        },
    }


def adapter_rules() -> dict:
    """prometheus-adapter's rule config (its --config file; the Helm chart's `rules.custom` takes the list): the
    recorded weighted queue time per pod, as the custom metric the autoscaler reads."""
    return {"rules": [{
        "seriesQuery": f'{promql.QUEUE_RECORD}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{promql.QUEUE_RECORD}$", "as": ADAPTER_METRIC},
        "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }]}


def adapter_config_map(cluster: Cluster, config_yaml: str) -> dict:
    """`config_yaml`: adapter_rules() as YAML, mounted as the adapter's --config file."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta("modelport-prometheus-adapter", cluster, "prometheus-adapter"),
            "data": {"config.yaml": config_yaml}}


def service_monitor(cluster: Cluster) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": meta(NAME, cluster),
        "spec": {"selector": {"matchLabels": labels(NAME)}, "namespaceSelector": {"matchNames": [cluster.namespace]},
                 "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]},
    }


def prometheus_rule(cluster: Cluster, spec: Spec, budgets: rules.Budgets) -> dict:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": meta(NAME, cluster),
            "spec": rules.rule_file(rules.kubernetes_groups(spec, budgets))}


def serving_runtime(cluster: Cluster, measured: Measured) -> dict:
    """KServe runs the container with the model downloaded to /mnt/models by its storage initializer; its data plane
    expects HTTP on 8080 and gRPC on 9000 (KServe's own kserve-tritonserver runtime uses the same)."""
    volumes, mounts = scratch_volumes()
    # KServe takes one container port, the data plane's; Triton's metrics stay on 8002 (the annotations below).
    container = triton_container(cluster, measured, "/mnt/models", [], mounts, ports=(("http1", 8080),),
                                 extra_args=("--http-port=8080", "--grpc-port=9000"))
    container["name"] = "kserve-container"
    return {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": meta(NAME, cluster),
        "spec": {
            "annotations": {"prometheus.kserve.io/port": "8002", "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": "triton", "version": "2", "autoSelect": True}],
            "protocolVersions": ["v2", "grpc-v2"],
            "multiModel": False,
            "containers": [container],
            "volumes": volumes,
        },
    }


def inference_service(cluster: Cluster) -> dict:
    _endpoint, path = cluster.s3_parts
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": meta("modelport", cluster, annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}),
        "spec": {"predictor": {
            "minReplicas": cluster.replicas, "maxReplicas": cluster.max_replicas,
            # KServe's storage initializer reads the S3 credentials and endpoint from the Secret of this account.
            "serviceAccountName": "modelport-s3",
            "model": {"modelFormat": {"name": "triton"}, "runtime": NAME, "protocolVersion": "v2",
                      "storageUri": f"s3://{path}"},
        }},
    }


def kserve_service_account(cluster: Cluster) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("modelport-s3", cluster, "modelport"),
            "secrets": [{"name": "modelport-s3"}]}


def locust(cluster: Cluster) -> list[dict]:
    """A master (web UI on 8089) and workers running loadtest/locustfile.py from the load-test image; the run's
    settings come from a ConfigMap as LOCUST_* variables (Locust reads its options from the environment)."""
    settings = {
        "LOCUST_LOCUSTFILE": "loadtest/locustfile.py", "LOCUST_HOST": f"http://{NAME}:8000",
        "LOCUST_GRPC_HOST": f"{NAME}:8001", "LOCUST_METRICS_URL": f"{NAME}:8002",
    }
    env_from = [{"configMapRef": {"name": "modelport-locust"}}]

    def pod(role: str, args: list[str], ports: list[dict]) -> dict:
        return {"metadata": {"labels": labels(f"modelport-locust-{role}")}, "spec": {
            "securityContext": pod_security(),
            "containers": [{
                "name": f"locust-{role}", "image": cluster.loadtest_image, "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-m", "locust"], "args": args, "envFrom": env_from, "ports": ports,
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "securityContext": {**container_security(), "readOnlyRootFilesystem": False},
            }],
        }}

    def workload(role: str, replicas: int, args: list[str], ports: list[dict]) -> dict:
        name = f"modelport-locust-{role}"
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name, cluster),
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels(name)},
                         "template": pod(role, args, ports)}}

    master_ports = [{"name": "web", "containerPort": 8089}, {"name": "workers", "containerPort": 5557}]
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("modelport-locust", cluster), "data": settings},
        workload("master", 1, ["--master", "--expect-workers", str(cluster.locust_workers)], master_ports),
        {"apiVersion": "v1", "kind": "Service", "metadata": meta("modelport-locust-master", cluster),
         "spec": {"selector": labels("modelport-locust-master"),
                  "ports": [{"name": "web", "port": 8089, "targetPort": "web"},
                            {"name": "workers", "port": 5557, "targetPort": "workers"}]}},
        workload("worker", cluster.locust_workers, ["--worker", "--master-host", "modelport-locust-master"], []),
        # The load test calls Triton itself, past the gateway: this policy admits it while locust.yaml is applied;
        # `kubectl delete -f deploy/k8s/locust.yaml` closes Triton again.
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("modelport-locust", cluster),
         "spec": {"podSelector": {"matchLabels": labels(NAME)}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": labels(f"modelport-locust-{role}")}}
                                        for role in ("master", "worker")],
                               "ports": [{"protocol": "TCP", "port": number} for _name, number in PORTS]}]}},
    ]


GATEWAY_PACKAGES = ("gateway", "core", "export", "serve")  # what gateway/ imports from this repository (test_k8s.py checks)


def python_image(user: str, home: str, body: list[str], entrypoint: str) -> list[str]:
    """A Dockerfile's lines: the pinned environment for `user`, then `body`, then the entry point."""
    return ["FROM python:3.11-slim", f"RUN useradd --create-home --uid {UID} {user}", f"WORKDIR {home}",
            "COPY requirements-py311.lock ./", "RUN python -m pip install --no-cache-dir -r requirements-py311.lock",
            *body, f"USER {UID}", f'ENTRYPOINT ["python", "-m", "{entrypoint}"]']


def gateway_dockerfile() -> str:
    """The gateway image deploy/k8s/triton-*.yaml runs beside Triton: the gateway with the packages it imports, the
    modelport client, models.toml and the repository's configs and cards (its catalogue), the pinned environment."""
    lines = [
        "# Generated by `make deploy` from models.toml (operate/k8s.py): the gateway beside Triton in deploy/k8s/.",
        "# Build from the repository root after `make export`: docker build -f deploy/k8s/gateway.Dockerfile -t modelport-gateway .",
        *python_image("gateway", "/home/gateway/modelport", [
            "COPY client client", "RUN python -m pip install --no-cache-dir --no-deps ./client", "COPY models.toml ./",
            *(f"COPY {package} {package}" for package in GATEWAY_PACKAGES), "COPY model_repository model_repository",
        ], "gateway"),
    ]
    return "\n".join(lines) + "\n"


def loadtest_dockerfile(spec: Spec) -> str:
    """The load-test image: the locustfile imports the loadtest and core packages and sends the payload files the
    spec names (written by `make export`), so the image holds those, with the pinned environment."""
    root = spec.root
    payloads = sorted({str(p.relative_to(root)) for m in spec.models
                       for p in ([m.loadtest.samples] if m.loadtest.samples else [])
                       + ([m.source.onnx.heldout] if m.source.onnx else [])})
    lines = [
        "# Generated by `make deploy` from models.toml (operate/k8s.py): the image deploy/k8s/locust.yaml runs.",
        "# Build from the repository root: docker build -f deploy/k8s/loadtest.Dockerfile -t modelport-loadtest .",
        *python_image("locust", "/home/locust/modelport", [
            "COPY models.toml ./", "COPY loadtest loadtest", "COPY core core",
            *(f"COPY {path} {path}" for path in payloads),
        ], "locust"),
    ]
    return "\n".join(lines) + "\n"
