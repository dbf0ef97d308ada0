"""Offline checks of how the Kubernetes manifests scale and stay available: the KEDA ScaledObjects
(validated against KEDA's own CRD schemas, vendored in tests/deploy/schemas/keda), the
HorizontalPodAutoscalers, the PodDisruptionBudgets, and the external RabbitMQ and PostgreSQL.

Each rule is a function that lists what is wrong in a set of manifests. The manifests of the
repository must give none, and every rule is shown to fire on a copy broken on purpose, so a rule
that could never fail would be noticed.
"""
from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

import pytest

from services.common import click_messages, settings, topology
from tests.deploy.manifests import by_kind, crd_errors, crd_schemas, k8s_docs, mutated

NAMESPACE = "flattr"
PLATFORM_SECRET = "flattr-secrets"
BROKER_NODE = re.compile(r"rabbitmq-\d+")
# the queues each autoscaled worker process consumes, as the code names them
QUEUES_CONSUMED = {
    "services.clicks.worker": {click_messages.REQUEST_QUEUE},
    "services.settlement.run_payouts": {topology.handler_queue(*s).name for s in topology.SUBSCRIPTIONS if s[2] == "payouts"},
}
BATCH_RUNNER = "services.settlement.run_batch"


# --------------------------------------------------------------------------- reading the manifests


def _module(deployment: dict) -> str:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["command"][container["command"].index("-m") + 1]


def _deployment_by_module(docs, module: str) -> dict:
    (deployment,) = [d for d in by_kind(docs, "Deployment").values() if _module(d) == module]
    return deployment


def _autoscalers(docs) -> list[tuple[str, dict, dict]]:
    """(kind/name, the autoscaler, its scale target reference) of every HPA and ScaledObject."""
    found = []
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, doc in by_kind(docs, kind).items():
            found.append((f"{kind}/{name}", doc, doc["spec"]["scaleTargetRef"]))
    return found


def _autoscaler_bounds(doc: dict) -> tuple[int, int]:
    spec = doc["spec"]
    if doc["kind"] == "HorizontalPodAutoscaler":
        return spec.get("minReplicas", 1), spec["maxReplicas"]
    return spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)  # KEDA's defaults


def _fewest_replicas(docs, deployment: dict) -> int:
    """The fewest pods a Deployment runs: its autoscaler's minimum, or its own replica count."""
    name = deployment["metadata"]["name"]
    for _, scaler, ref in _autoscalers(docs):
        if ref["name"] == name:
            return _autoscaler_bounds(scaler)[0]
    return deployment["spec"].get("replicas", 1)


def _amqp_vhost(uri: str) -> str:
    # kombu: the path after the first slash, URL-decoded; empty means "/"
    return unquote(urlparse(uri).path[1:]) or "/"


def _management_vhost(url: str) -> str:
    # KEDA's RabbitMQ scaler over HTTP: the last path segment, URL-decoded; empty means "/"
    return unquote(urlparse(url).path.split("/")[-1]) or "/"


def _setting(docs, name: str) -> str:
    config = by_kind(docs, "ConfigMap")["flattr-config"]["data"]
    if name in config:
        return config[name]
    (declared,) = [s for s in settings.SETTINGS if s.name == name]
    return declared.default


# --------------------------------------------------------------------------- the rules


def autoscaling_errors(docs) -> list[str]:
    """Every autoscaler targets a Deployment that exists, alone, and keeps one pod at least (the
    click path and the payouts sweep need one); utilisation targets have requests to be measured
    against; an autoscaled Deployment leaves its replica count to the autoscaler."""
    errors = []
    deployments = by_kind(docs, "Deployment")
    owners: dict[str, list[str]] = {}
    for label, scaler, ref in _autoscalers(docs):
        if ref.get("apiVersion", "apps/v1") != "apps/v1" or ref.get("kind", "Deployment") != "Deployment":
            errors.append(f"{label} targets {ref.get('apiVersion')} {ref.get('kind')}, not an apps/v1 Deployment")
            continue
        target = deployments.get(ref["name"])
        if target is None:
            errors.append(f"{label} targets Deployment/{ref['name']}, which does not exist")
            continue
        owners.setdefault(ref["name"], []).append(label)
        low, high = _autoscaler_bounds(scaler)
        if not 1 <= low <= high:
            errors.append(f"{label}: replicas from {low} to {high}")
        fallback = scaler["spec"].get("fallback")
        if fallback and not low <= fallback["replicas"] <= high:
            errors.append(f"{label}: fallback of {fallback['replicas']} replicas is outside {low}..{high}")
        metrics = scaler["spec"].get("metrics", []) if scaler["kind"] == "HorizontalPodAutoscaler" else [
            {"type": "Resource", "resource": {"name": t["type"], "target": {"type": t.get("metricType")}}}
            for t in scaler["spec"]["triggers"] if t["type"] in ("cpu", "memory")
        ]
        for metric in metrics:
            if metric["type"] == "Resource" and metric["resource"]["target"]["type"] == "Utilization":
                resource = metric["resource"]["name"]
                for container in target["spec"]["template"]["spec"]["containers"]:
                    if resource not in container.get("resources", {}).get("requests", {}):
                        errors.append(
                            f"{label} scales on {resource} utilisation, but Deployment/{ref['name']}'s "
                            f"container {container['name']} requests no {resource}"
                        )
    for name, labels in owners.items():
        if len(labels) > 1:
            errors.append(f"Deployment/{name} has several autoscalers fighting over it: {', '.join(labels)}")
    for name, deployment in deployments.items():
        declares = "replicas" in deployment["spec"]
        if name in owners and declares:
            errors.append(f"Deployment/{name} declares replicas, which each apply would reset under its autoscaler")
        if name not in owners and not declares:
            errors.append(f"Deployment/{name} has neither replicas nor an autoscaler")
    return errors


def keda_errors(docs) -> list[str]:
    """Every KEDA object matches KEDA's schema; each trigger measures a queue its target consumes and
    authenticates through a TriggerAuthentication whose Secret is in the template, never inline."""
    errors = []
    for _, doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            errors += [f"{doc['kind']}/{doc['metadata']['name']}: {e}" for e in crd_errors(doc)]
    if errors:
        return errors
    deployments = by_kind(docs, "Deployment")
    secrets = by_kind(docs, "Secret")
    auths = by_kind(docs, "TriggerAuthentication")
    for name, auth in auths.items():
        for ref in auth["spec"].get("secretTargetRef", []):
            if ref["key"] not in secrets.get(ref["name"], {}).get("stringData", {}):
                errors.append(f"TriggerAuthentication/{name} reads key {ref['key']} of Secret/{ref['name']}, which the template lacks")
    for name, scaled in by_kind(docs, "ScaledObject").items():
        target = deployments.get(scaled["spec"]["scaleTargetRef"]["name"])
        consumed = QUEUES_CONSUMED.get(_module(target), set()) if target else set()
        for trigger in scaled["spec"]["triggers"]:
            label = f"ScaledObject/{name} trigger {trigger['type']}"
            if trigger["type"] != "rabbitmq":
                errors.append(f"{label}: only rabbitmq triggers are checked here")
                continue
            meta = trigger["metadata"]
            inline = {"host", "hostFromEnv", "username", "password", "usernameFromEnv", "passwordFromEnv"} & set(meta)
            if inline:
                errors.append(f"{label}: {sorted(inline)} in the manifest; credentials come from the TriggerAuthentication")
            if target is not None and meta.get("queueName") not in consumed:
                errors.append(f"{label}: queue {meta.get('queueName')!r} is not one Deployment/{target['metadata']['name']} consumes ({sorted(consumed)})")
            if meta.get("mode") != "QueueLength":
                errors.append(f"{label}: mode {meta.get('mode')!r}, expected QueueLength")
            try:
                if float(meta.get("value", "")) <= 0:
                    raise ValueError
            except ValueError:
                errors.append(f"{label}: value {meta.get('value')!r} is not a positive number")
            exclude = meta.get("excludeUnacknowledged", "false")
            if exclude not in ("true", "false"):
                errors.append(f"{label}: excludeUnacknowledged {exclude!r} is neither true nor false")
            if exclude == "true" and meta.get("protocol") != "http":
                errors.append(f"{label}: excludeUnacknowledged needs protocol http (the management API)")
            ref = trigger.get("authenticationRef")
            auth = auths.get(ref["name"]) if ref and ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication" else None
            if auth is None:
                errors.append(f"{label}: no TriggerAuthentication {ref and ref['name']!r} in the manifests")
            elif "host" not in {r["parameter"] for r in auth["spec"].get("secretTargetRef", [])}:
                errors.append(f"{label}: TriggerAuthentication/{ref['name']} gives no host")
    return errors


def disruption_errors(docs) -> list[str]:
    """Each PodDisruptionBudget covers the pods of exactly one Deployment and lets a drain proceed;
    every Deployment of several pods has one; the batch runner stays one pod, replaced, not rolled."""
    errors = []
    deployments = by_kind(docs, "Deployment")
    covered: dict[str, list[str]] = {}
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        selector = pdb["spec"].get("selector", {})
        wanted = selector.get("matchLabels", {})
        if not wanted or set(selector) != {"matchLabels"}:
            errors.append(f"PodDisruptionBudget/{name}: select pods by matchLabels only (and some)")
            continue
        matching = [
            d for d in deployments.values() if wanted.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        if len(matching) != 1:
            what = "no Deployment's pods" if not matching else f"the pods of {len(matching)} Deployments"
            errors.append(f"PodDisruptionBudget/{name}: its selector {wanted} matches {what}")
            continue
        target = matching[0]
        covered.setdefault(target["metadata"]["name"], []).append(name)
        fewest = _fewest_replicas(docs, target)
        spec = pdb["spec"]
        if ("minAvailable" in spec) == ("maxUnavailable" in spec):
            errors.append(f"PodDisruptionBudget/{name}: set minAvailable or maxUnavailable, one of them")
        elif not isinstance(spec.get("minAvailable", spec.get("maxUnavailable")), int):
            errors.append(f"PodDisruptionBudget/{name}: use a pod count, not a percentage")
        elif spec.get("maxUnavailable", 1) < 1 or spec.get("minAvailable", 0) >= fewest:
            errors.append(f"PodDisruptionBudget/{name} lets no pod of {target['metadata']['name']} be evicted: every node drain would hang")
    for name, deployment in deployments.items():
        if _fewest_replicas(docs, deployment) > 1 and len(covered.get(name, [])) != 1:
            errors.append(f"Deployment/{name} runs several pods, so it needs one PodDisruptionBudget (has {covered.get(name, [])})")
    runner = _deployment_by_module(docs, BATCH_RUNNER)
    runner_name = runner["metadata"]["name"]
    if runner["spec"].get("replicas") != 1 or runner["spec"].get("strategy", {}).get("type") != "Recreate":
        errors.append(f"Deployment/{runner_name} is the one settlement batch runner: replicas 1, strategy Recreate")
    if any(ref["name"] == runner_name for _, _, ref in _autoscalers(docs)):
        errors.append(f"Deployment/{runner_name} is the one settlement batch runner: never autoscaled")
    return errors


def external_service_errors(docs) -> list[str]:
    """RabbitMQ and PostgreSQL are reached only through the ExternalName aliases: AMQP_URI lists
    every broker node, the database URLs and KEDA's management URL name aliases, one virtual host."""
    errors = []
    aliases = {n: s for n, s in by_kind(docs, "Service").items() if s["spec"].get("type") == "ExternalName"}
    nodes = {n for n in aliases if BROKER_NODE.fullmatch(n)}
    if len(nodes) < 3:
        errors.append(f"quorum queues need three broker nodes at least; aliases: {sorted(nodes)}")
    if _setting(docs, "BROKER_QUEUE_TYPE") != "quorum":
        errors.append("the production ConfigMap must set BROKER_QUEUE_TYPE=quorum")
    secret = by_kind(docs, "Secret")[PLATFORM_SECRET]["stringData"]
    brokers = [urlparse(u) for u in secret["AMQP_URI"].split(";")]
    listed = [b.hostname for b in brokers]
    if sorted(listed) != sorted(nodes):
        errors.append(f"AMQP_URI lists {listed}, the broker node aliases are {sorted(nodes)}")
    if {b.scheme for b in brokers} - {"amqp", "amqps"}:
        errors.append(f"AMQP_URI: schemes {sorted({b.scheme for b in brokers})}")
    vhosts = {_amqp_vhost(u) for u in secret["AMQP_URI"].split(";")}
    if len(vhosts) != 1:
        errors.append(f"AMQP_URI: one virtual host on every node, not {sorted(vhosts)}")
    for key, url in secret.items():
        if key.endswith("_DATABASE_URL") and urlparse(url).hostname not in aliases:
            errors.append(f"{key} names {urlparse(url).hostname}, not an external service alias {sorted(aliases)}")
    for name, auth in by_kind(docs, "TriggerAuthentication").items():
        for ref in auth["spec"].get("secretTargetRef", []):
            host = by_kind(docs, "Secret").get(ref["name"], {}).get("stringData", {}).get(ref["key"])
            if ref["parameter"] != "host" or host is None:  # a missing Secret is keda_errors' finding
                continue
            url = urlparse(host)
            # KEDA runs in its own namespace: the alias by its namespaced name
            alias = url.hostname.removesuffix(f".{NAMESPACE}.svc") if url.hostname.endswith(f".{NAMESPACE}.svc") else None
            if alias not in aliases:
                errors.append(f"TriggerAuthentication/{name}'s host {url.hostname} is not <alias>.{NAMESPACE}.svc")
            if _management_vhost(url.geturl()) not in vhosts:
                errors.append(f"TriggerAuthentication/{name} reads virtual host {_management_vhost(url.geturl())!r}, the platform uses {sorted(vhosts)}")
    return errors


RULES = (autoscaling_errors, keda_errors, disruption_errors, external_service_errors)


def all_errors(docs) -> list[str]:
    return [error for rule in RULES for error in rule(docs)]


# --------------------------------------------------------------------------- the manifests pass


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_the_manifests_keep_the_rule(rule):
    assert rule(k8s_docs()) == []


def test_every_keda_object_is_checked_against_a_vendored_crd():
    keda = [d for _, d in k8s_docs() if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    assert {(d["apiVersion"], d["kind"]) for d in keda} <= set(crd_schemas())


def test_click_workers_scale_on_the_click_request_queue():
    docs = k8s_docs()
    worker = _deployment_by_module(docs, "services.clicks.worker")
    (scaled,) = [s for s in by_kind(docs, "ScaledObject").values() if s["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == click_messages.REQUEST_QUEUE == "clicks.requests"
    # the backlog no worker has taken: each worker holds 2 x CLICK_BATCH_SIZE unacknowledged
    assert trigger["metadata"]["excludeUnacknowledged"] == "true"
    assert scaled["spec"]["minReplicaCount"] >= 2, "a dead worker must not leave clicks waiting for a new pod"


def test_payouts_scale_on_their_queue_one_pod_per_event_workers():
    docs = k8s_docs()
    payouts = _deployment_by_module(docs, "services.settlement.run_payouts")
    (scaled,) = [s for s in by_kind(docs, "ScaledObject").values() if s["spec"]["scaleTargetRef"]["name"] == payouts["metadata"]["name"]]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == "evt-settlement-payout.requested--payouts.on_payout_requested"
    # waiting and in hand, per pod: as many as one pod's event handlers take at once
    assert trigger["metadata"]["excludeUnacknowledged"] == "false"
    assert float(trigger["metadata"]["value"]) == float(_setting(docs, "EVENT_WORKERS"))


def test_the_gateway_scales_on_cpu():
    docs = k8s_docs()
    (hpa,) = [h for h in by_kind(docs, "HorizontalPodAutoscaler").values() if h["spec"]["scaleTargetRef"]["name"] == "gateway"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["minReplicas"] >= 2


# --------------------------------------------------------------------------- and each rule can fail


def _container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


def _trigger_meta(doc):
    return doc["spec"]["triggers"][0]["metadata"]


BROKEN = {
    "ScaledObject targets a Deployment that does not exist": (
        "ScaledObject", "click-worker", lambda d: d["spec"]["scaleTargetRef"].update(name="click-workers"),
        "targets Deployment/click-workers, which does not exist",
    ),
    "HPA on CPU without CPU requests on its target": (
        "Deployment", "gateway", lambda d: _container(d)["resources"]["requests"].pop("cpu"),
        "requests no cpu",
    ),
    "PDB whose selector matches nothing": (
        "PodDisruptionBudget", "gateway", lambda d: d["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "gateways"}),
        "matches no Deployment's pods",
    ),
    "PDB that blocks every drain": (
        "PodDisruptionBudget", "payouts", lambda d: d["spec"].update(maxUnavailable=0),
        "lets no pod of payouts be evicted",
    ),
    "Deployment of several pods without a PDB": (
        "PodDisruptionBudget", "accounts", lambda d: d["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "settlement-batch"}),
        "Deployment/accounts runs several pods",
    ),
    "PDB that keeps the single batch runner from ever being evicted": (
        "PodDisruptionBudget", "accounts", lambda d: d.update(spec={"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "settlement-batch"}}}),
        "lets no pod of settlement-batch be evicted",
    ),
    "PDB with both bounds": (
        "PodDisruptionBudget", "gateway", lambda d: d["spec"].update(minAvailable=1),
        "set minAvailable or maxUnavailable, one of them",
    ),
    "ScaledObject field KEDA does not know": (
        "ScaledObject", "payouts", lambda d: d["spec"].update(minReplicas=1),
        "'minReplicas' was unexpected",
    ),
    "trigger value that is not a string": (
        "ScaledObject", "click-worker", lambda d: _trigger_meta(d).update(value=50),
        "50 is not of type 'string'",
    ),
    "trigger on a queue the target does not consume": (
        "ScaledObject", "click-worker", lambda d: _trigger_meta(d).update(queueName="clicks.dead"),
        "queue 'clicks.dead' is not one Deployment/click-worker consumes",
    ),
    "broker credentials written into the trigger": (
        "ScaledObject", "payouts", lambda d: _trigger_meta(d).update(host="http://user:secret@rabbitmq.flattr.svc:15672/"),
        "credentials come from the TriggerAuthentication",
    ),
    "TriggerAuthentication reading a Secret the template lacks": (
        "TriggerAuthentication", "rabbitmq-queue-length", lambda d: d["spec"]["secretTargetRef"][0].update(name="keda-rabbit"),
        "Secret/keda-rabbit, which the template lacks",
    ),
    "ready-only count over AMQP": (
        "ScaledObject", "click-worker", lambda d: _trigger_meta(d).update(protocol="amqp"),
        "excludeUnacknowledged needs protocol http",
    ),
    "HPA and ScaledObject on one Deployment": (
        "HorizontalPodAutoscaler", "clicks", lambda d: d["spec"]["scaleTargetRef"].update(name="click-worker"),
        "several autoscalers fighting over it",
    ),
    "autoscaled Deployment that declares replicas": (
        "Deployment", "gateway", lambda d: d["spec"].update(replicas=2),
        "Deployment/gateway declares replicas",
    ),
    "a second settlement batch runner": (
        "Deployment", "settlement-batch", lambda d: d["spec"].update(replicas=2),
        "the one settlement batch runner: replicas 1, strategy Recreate",
    ),
    "settlement batch runner rolled instead of recreated": (
        "Deployment", "settlement-batch", lambda d: d["spec"].update(strategy={"type": "RollingUpdate"}),
        "the one settlement batch runner: replicas 1, strategy Recreate",
    ),
    "AMQP_URI naming a broker that is no alias": (
        "Secret", PLATFORM_SECRET, lambda d: d["stringData"].update(AMQP_URI=d["stringData"]["AMQP_URI"].replace("rabbitmq-2", "rabbitmq.example.org")),
        "AMQP_URI lists",
    ),
    "AMQP_URI missing a node": (
        "Secret", PLATFORM_SECRET, lambda d: d["stringData"].update(AMQP_URI=d["stringData"]["AMQP_URI"].rsplit(";", 1)[0]),
        "AMQP_URI lists",
    ),
    "database URL past the aliases": (
        "Secret", PLATFORM_SECRET, lambda d: d["stringData"].update(CLICKS_DATABASE_URL="postgresql+psycopg2://u:p@db.example.org:5432/flattr"),
        "CLICKS_DATABASE_URL names db.example.org",
    ),
    "classic queues in production": (
        "ConfigMap", "flattr-config", lambda d: d["data"].update(BROKER_QUEUE_TYPE="classic"),
        "BROKER_QUEUE_TYPE=quorum",
    ),
    "KEDA reading another virtual host": (
        "Secret", "keda-rabbitmq", lambda d: d["stringData"].update(host=d["stringData"]["host"] + "staging"),
        "reads virtual host 'staging'",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_broken_manifest_is_caught(case):
    kind, name, change, expected = BROKEN[case]
    errors = all_errors(mutated(k8s_docs(), kind, name, change))
    assert any(expected in e for e in errors), errors
