"""The generated Kubernetes and KServe manifests, validated offline: built-in kinds strictly against Kubernetes
1.37's schemas (kubernetes-validate); custom resources, whose CRD schemas no package ships, parsed and checked for
the fields the rest relies on."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from core import promql
from core.triton import METRICS_FLAGS, ServeOptions, tritonserver_argv
from operate import k8s
from core.triton_install import Runtime
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.37"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
          ("serving.kserve.io/v1alpha1", "ServingRuntime"), ("serving.kserve.io/v1beta1", "InferenceService")}
DOCUMENTS = [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
MEASURED = k8s.Measured.read(ROOT / "deploy" / "measured.json")


def find(kind: str, file: str | None = None, name: str | None = None) -> dict:
    found = [d for f, d in DOCUMENTS if d["kind"] == kind and (file is None or f == file)
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} in {file or 'deploy/k8s'}, found {len(found)}"
    return found[0]


def triton_container(deployment: dict) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "triton")


BUILT_IN = [(f, d) for f, d in DOCUMENTS if (d["apiVersion"], d["kind"]) not in CUSTOM]


@pytest.mark.parametrize(("file", "document"), BUILT_IN,
                         ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in BUILT_IN])
def test_each_built_in_resource_validates_strictly_against_kubernetes_1_37(file, document):
    assert kubernetes_validate.validate(document, KUBERNETES, strict=True) == KUBERNETES


def test_strict_validation_does_catch_a_misspelled_field():
    broken = yaml.safe_load(yaml.safe_dump(find("Deployment", "triton-s3.yaml")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_every_kind_in_the_manifests_is_either_built_in_or_a_known_custom_resource():
    kinds = {(d["apiVersion"], d["kind"]) for _f, d in DOCUMENTS}
    assert CUSTOM <= kinds
    assert {("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget")} <= kinds


@pytest.mark.parametrize("file", ["triton-s3.yaml", "triton-pvc.yaml"])
def test_the_triton_deployment_runs_non_root_with_health_probes_sized_from_the_measured_load(file):
    deployment = find("Deployment", file, k8s.NAME)
    pod = deployment["spec"]["template"]["spec"]
    container = triton_container(deployment)

    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == k8s.UID
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= k8s.STARTUP_FACTOR * MEASURED.startup_s + k8s.DOWNLOAD_ALLOWANCE_S and budget >= k8s.MIN_STARTUP_S
    assert container["image"] == "modelport-triton:latest"  # the Makefile's IMAGE, from triton.Dockerfile
    assert f"--uid {k8s.UID}" in (ROOT / "triton.Dockerfile").read_text()


def test_the_s3_deployment_reads_the_repository_from_s3_with_credentials_from_a_secret():
    container = triton_container(find("Deployment", "triton-s3.yaml"))
    repository = next(a for a in container["args"] if a.startswith("--model-repository="))
    env = {e["name"]: e for e in container["env"]}

    assert k8s.S3_URL.match(repository.split("=", 1)[1])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MODELPORT_ADMIN_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"]


def test_the_pvc_deployment_mounts_the_claim_read_only_as_its_repository():
    claim = find("PersistentVolumeClaim", "triton-pvc.yaml")
    deployment = find("Deployment", "triton-pvc.yaml")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v)
    container = triton_container(deployment)

    assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"], "readOnly": True}
    assert {"name": volume["name"], "mountPath": k8s.MODELS_MOUNT, "readOnly": True} in container["volumeMounts"]
    assert f"--model-repository={k8s.MODELS_MOUNT}" in container["args"]


def test_the_manifests_start_triton_with_the_security_and_metrics_flags_of_python_m_serve():
    local = tritonserver_argv(ServeOptions(repository=Path("/r"), admin_key="KEY"),
                              Runtime(Path("/t"), Path("/l"), Path("/b"), Path("/p")), "tag")
    wanted = [a.replace("KEY", "$(MODELPORT_ADMIN_KEY)") for a in local
              if a.startswith(("--model-control-mode", "--load-model", "--strict-readiness", "--metrics-config",
                               "--http-restricted-api", "--grpc-restricted-protocol"))]
    assert len(wanted) == 7 and set(METRICS_FLAGS) <= set(wanted)
    args = triton_container(find("Deployment", "triton-s3.yaml"))["args"]
    assert all(flag in args for flag in wanted)
    assert k8s.expand(["x=$(MODELPORT_ADMIN_KEY)", "$(UNSET)"], {"MODELPORT_ADMIN_KEY": "k"}) == ["x=k", "$(UNSET)"]


def gateway_container(deployment: dict) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway")


def port_number(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


@pytest.mark.parametrize("file", ["triton-s3.yaml", "triton-pvc.yaml"])
def test_the_gateway_runs_beside_triton_in_each_pod_and_calls_its_grpc_port_over_loopback(file):
    deployment = find("Deployment", file, k8s.NAME)
    pod = deployment["spec"]["template"]["spec"]
    triton, gateway = triton_container(deployment), gateway_container(deployment)
    args = gateway["args"]

    assert args[args.index("--triton") + 1] == f"127.0.0.1:{port_number(triton, 'grpc')}"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == str(port_number(gateway, "gateway"))
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert "secretKeyRef" in next(e for e in gateway["env"] if e["name"] == "MODELPORT_API_KEY")["valueFrom"]
    # Containers keep their own PID namespaces: the gateway cannot read tritonserver's argv (the admin key).
    assert not pod.get("shareProcessNamespace", False)


def allowed_peers(policies: list[dict], pod_labels: dict, port: int) -> list[list[dict] | None]:
    """For each ingress rule of the policies selecting these pods that admits `port`: its `from` peers (None: any)."""
    peers = []
    for policy in policies:
        if not policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items():
            continue
        for rule in policy["spec"].get("ingress", []):
            if "ports" not in rule or any(p["port"] == port for p in rule["ports"]):
                peers.append(rule.get("from"))
    return peers


def test_the_network_policy_lets_only_prometheus_reach_triton_and_everyone_the_gateway():
    deployment = find("Deployment", "triton-s3.yaml", k8s.NAME)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    triton, gateway = triton_container(deployment), gateway_container(deployment)
    policies = [find("NetworkPolicy", "triton.yaml")]

    assert policies[0]["spec"]["policyTypes"] == ["Ingress"]
    for name in ("http", "grpc"):
        assert allowed_peers(policies, pod_labels, port_number(triton, name)) == [], name
    (prometheus,) = allowed_peers(policies, pod_labels, port_number(triton, "metrics"))
    assert prometheus == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                           "podSelector": {"matchLabels": k8s.PROMETHEUS_POD}}]
    assert allowed_peers(policies, pod_labels, port_number(gateway, "gateway")) == [None]  # the public edge


def test_the_gateway_service_is_the_public_edge_on_the_gateway_port():
    service = find("Service", "triton.yaml", k8s.GATEWAY)
    deployment = find("Deployment", "triton-s3.yaml", k8s.NAME)

    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["gateway"]


def test_the_load_test_opens_triton_only_to_locust_while_it_is_applied():
    policy = find("NetworkPolicy", "locust.yaml")
    deployment = find("Deployment", "triton-s3.yaml", k8s.NAME)
    locust_pods = [find("Deployment", "locust.yaml", f"modelport-locust-{role}")["spec"]["template"]["metadata"]["labels"]
                   for role in ("master", "worker")]
    (peers,) = allowed_peers([policy], deployment["spec"]["template"]["metadata"]["labels"], 8000)

    assert [peer["podSelector"]["matchLabels"] for peer in peers] == locust_pods
    assert all(set(peer) == {"podSelector"} for peer in peers)  # same namespace only


def test_the_gateway_image_holds_every_package_the_gateway_imports():
    imported = {node.module.split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
                for path in (ROOT / "gateway").glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
                for alias in (node.names if isinstance(node, ast.Import) else node.names[:1])}
    ours = {name for name in imported if (ROOT / name / "__init__.py").is_file()}
    dockerfile = (K8S / "gateway.Dockerfile").read_text()

    assert ours <= set(k8s.GATEWAY_PACKAGES), f"gateway/ imports {sorted(ours)}: add them to k8s.GATEWAY_PACKAGES"
    for path in (*k8s.GATEWAY_PACKAGES, "models.toml", "model_repository", "client"):
        assert f"COPY {path} " in dockerfile
    assert "modelport" in imported and "pip install --no-cache-dir --no-deps ./client" in dockerfile


def test_the_autoscaler_is_autoscaling_v2_on_the_adapters_weighted_queue_metric():
    hpa = find("HorizontalPodAutoscaler")
    adapter = yaml.safe_load(find("ConfigMap", "prometheus-adapter.yaml")["data"]["config.yaml"])["rules"][0]
    recorded = [r["record"] for g in find("PrometheusRule")["spec"]["groups"] for r in g["rules"] if "record" in r]

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": k8s.NAME}
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == adapter["name"]["as"]
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert re.match(rf"^\^?{re.escape(promql.QUEUE_RECORD)}\$?$", adapter["name"]["matches"])
    assert adapter["seriesQuery"].startswith(promql.QUEUE_RECORD) and promql.QUEUE_RECORD in recorded
    assert set(adapter["resources"]["overrides"]) == {"namespace", "pod"}
    assert "<<.LabelMatchers>>" in adapter["metricsQuery"] and "<<.GroupBy>>" in adapter["metricsQuery"]


def test_the_service_monitor_scrapes_the_services_metrics_port_and_the_rule_carries_every_alert():
    service = find("Service", "triton.yaml", k8s.NAME)
    monitor = find("ServiceMonitor")
    rule = find("PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}

    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    # the ServiceMonitor's job label is the Service's name: the rules' job matchers must use it
    assert service["metadata"]["name"] == promql.TRITON_JOB
    assert {"TritonDown", "ModelNotLoaded", "ModelErrorRatioHigh", "ModelLatencyP99OverBudget",
            "ModelQueueTimeShareHigh", "ModelPendingRequestsHigh", "ModelBatchSizeLowUnderLoad",
            "TritonPodRestarted"} <= alerts
    assert find("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_kserve_runs_triton_with_protocol_v2_from_the_same_bucket():
    runtime = find("ServingRuntime")
    service = find("InferenceService")
    model = service["spec"]["predictor"]["model"]
    container = runtime["spec"]["containers"][0]

    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["storageUri"] == "s3://" + k8s.Cluster().s3_parts[1]
    assert container["name"] == "kserve-container" and "--model-repository=/mnt/models" in container["args"]
    assert set(METRICS_FLAGS) <= set(container["args"])
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == "8002"
    account = find("ServiceAccount")
    assert service["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]


def test_distributed_locust_workers_find_the_master_and_the_master_waits_for_all_of_them():
    master = find("Deployment", "locust.yaml", "modelport-locust-master")
    workers = find("Deployment", "locust.yaml", "modelport-locust-worker")
    service = find("Service", "locust.yaml")
    settings = find("ConfigMap", "locust.yaml")["data"]
    worker_args = workers["spec"]["template"]["spec"]["containers"][0]["args"]
    master_args = master["spec"]["template"]["spec"]["containers"][0]["args"]

    assert worker_args[worker_args.index("--master-host") + 1] == service["metadata"]["name"]
    assert int(master_args[master_args.index("--expect-workers") + 1]) == workers["spec"]["replicas"]
    assert settings["LOCUST_HOST"] == f"http://{k8s.NAME}:8000" and settings["LOCUST_LOCUSTFILE"] == "loadtest/locustfile.py"
    dockerfile = (K8S / "loadtest.Dockerfile").read_text()
    for path in ("models.toml", "loadtest", "core", "models/digits/heldout.npz",
                 "models/sentiment/samples.txt"):
        assert f"COPY {path} " in dockerfile


def test_a_repository_url_triton_cannot_parse_is_refused_when_the_cluster_is_described():
    with pytest.raises(ValueError, match="s3://host:port/bucket/path"):
        k8s.Cluster(s3_repository="s3://bucket-without-endpoint/models")
    with pytest.raises(ValueError, match="DNS label"):
        k8s.Cluster(namespace="Model_Port")
