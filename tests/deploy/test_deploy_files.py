"""Offline checks of the container deliverables: docker-compose.yml, deploy/Dockerfile,
deploy/k8s and the service health-check command.

The Compose file is validated against the Compose Specification schema as shipped by the
`check-jsonschema` package, the Kubernetes manifests against the OpenAPI-derived schemas shipped
by `kubernetes-validate` (both pinned in requirements-dev.txt). Nothing here needs a
Docker engine, a cluster or the network.
"""
from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import warnings

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import K8S_DIR, ROOT, by_kind, crd_schemas, k8s_docs

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

APP_SERVICES = ("accounts", "clicks", "settlement")  # nameko services, each with its own schema
DB_URL_KEY = {name: f"{name.upper()}_DATABASE_URL" for name in APP_SERVICES}
# processes that are not a schema's owner: the payouts worker and the batch runner work on the
# settlement schema
WORKERS = ("payouts", "click-worker", "settlement-batch")
DB_URL_KEY["payouts"] = "SETTLEMENT_DATABASE_URL"
DB_URL_KEY["settlement-batch"] = "SETTLEMENT_DATABASE_URL"
DB_URL_KEY["click-worker"] = "CLICKS_DATABASE_URL"
PROCESSES = (*APP_SERVICES, *WORKERS)
COMMANDS = {name: f"services.{name}" for name in (*APP_SERVICES, "gateway")}
COMMANDS["payouts"] = "services.settlement.run_payouts"
COMMANDS["click-worker"] = "services.clicks.worker"
COMMANDS["settlement-batch"] = "services.settlement.run_batch"
# how each process's health is probed: a nameko service answers its health RPC; the click worker,
# which is not a nameko service, checks its own heartbeat file
PROBES = {name: ["python", "-m", "services.common.healthcheck", name] for name in (*APP_SERVICES, "payouts")}
PROBES["click-worker"] = ["python", "-m", "services.clicks.worker", "--check"]
PROBES["settlement-batch"] = ["python", "-m", "services.common.healthcheck", "settlement_batch"]
SECRET_KEYS = ("FLATTR_ADMIN_TOKEN", "FLATTR_SECRET_KEY")
# what compose must be given (an .env file): it ships no working default for any secret
REQUIRED_IN_COMPOSE = ("FLATTR_SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD")
GIVEN_SECRETS = {name: "0123456789abcdef" * 4 for name in REQUIRED_IN_COMPOSE}
PLATFORM_SECRET = "flattr-secrets"
# The oldest Kubernetes minor we claim to support, and the newest the pinned validator knows.
K8S_MIN_VERSION = "1.30"


# --------------------------------------------------------------------------- helpers


def _load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation (``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``,
    ``${VAR-d}``, ``${VAR:?e}``, ``${VAR?e}``) applied to every string of a loaded file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        is_set = name in env
        is_nonempty = bool(env.get(name))
        if op in (":-", "-"):
            return env[name] if (is_nonempty if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (is_nonempty if op == ":?" else is_set):
                raise LookupError(f"required variable {name} is missing: {arg}")
            return env[name]
        return env.get(name, "")

    return _VAR.sub(one, value)


def _variables(text: str) -> list[tuple[str, str | None, str]]:
    """(name, operator, argument) of every interpolation in ``text``."""
    return [
        (m.group("name") or m.group("bare"), m.group("op"), m.group("arg") or "")
        for m in _VAR.finditer(text)
        if not m.group("escaped")
    ]


def _compose_schema() -> dict:
    # check-jsonschema vendors the upstream compose-spec schema for its "compose-spec" hook
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))


def _compose_errors(doc: dict) -> list[str]:
    schema = _compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _k8s(kind: str) -> dict[str, dict]:
    return by_kind(k8s_docs(), kind)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    out = []
    for entry in logical:
        instruction, _, args = entry.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


# --------------------------------------------------------------------------- compose: schema


def test_compose_file_is_valid_against_the_compose_specification():
    doc = _load_compose()
    assert _compose_errors(doc) == []
    # and it still is once variables are interpolated the way `docker compose` does, with only
    # the secrets set (the .env file the top of the file asks for)
    assert _compose_errors(interpolate(doc, env=GIVEN_SECRETS)) == []


def test_compose_schema_check_is_not_vacuous():
    doc = _load_compose()
    doc["services"]["clicks"]["healthchek"] = doc["services"]["clicks"].pop("healthcheck")
    doc["services"]["gateway"]["deploy"] = {"replicas": [2]}
    errors = _compose_errors(doc)
    assert any("healthchek" in e for e in errors), errors
    assert any("replicas" in e for e in errors), errors


def test_compose_needs_only_the_secrets_every_other_variable_has_a_default():
    for name, op, arg in _variables(COMPOSE_FILE.read_text()):
        if name in REQUIRED_IN_COMPOSE:
            assert op == ":?" and ".env" in arg, f"${{{name}}} must be required, with a hint where to set it"
        else:
            assert op in (":-", "-"), f"${{{name}}} has no default: `docker compose up` would need it set"
    # without them, compose stops at once and says which is missing
    doc = _load_compose()
    for name in REQUIRED_IN_COMPOSE:
        with pytest.raises(LookupError, match=name):
            interpolate(doc, env={k: v for k, v in GIVEN_SECRETS.items() if k != name})


def test_compose_interpolation_helper():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("a${SET:-d}b", env) == "axb"
    assert interpolate("${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|$$SET|$SET", env) == "d||d|$SET|x"
    with pytest.raises(LookupError):
        interpolate("${UNSET:?needed}", env)


# --------------------------------------------------------------------------- compose: behaviour


def test_every_compose_service_has_a_healthcheck():
    services = _load_compose()["services"]
    assert set(services) == {"rabbitmq", "postgres", "mailpit", "redis", *PROCESSES, "gateway"}
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_infrastructure_images_and_probes():
    services = _load_compose()["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert "rabbitmq-diagnostics" in services["rabbitmq"]["healthcheck"]["test"]
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    pg_env = services["postgres"]["environment"]
    assert pg_env["POSTGRES_DB"] == "flattr"
    assert pg_env["POSTGRES_PASSWORD"].startswith("${")
    # the gateway's rate limits and password throttles live in Redis, shared by its replicas
    assert services["redis"]["image"].startswith("redis:7")
    assert "ports" not in services["redis"], "the store is for the gateway only"
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["gateway"]["environment"]["FLATTR_RATE_LIMIT_STORAGE"] == "redis://redis:6379/0"


def test_app_services_share_one_image_built_from_the_dockerfile():
    services = _load_compose()["services"]
    images = set()
    for name in (*PROCESSES, "gateway"):
        svc = services[name]
        assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        images.add(svc["image"])
        assert svc["command"] == ["python", "-m", COMMANDS[name]], name
        assert (ROOT / (COMMANDS[name].replace(".", "/") + ".py")).is_file() or (ROOT / "services" / name).is_dir(), name
    assert len(images) == 1, "one image, built once, for every process"


def test_app_services_wait_for_healthy_dependencies():
    services = _load_compose()["services"]
    for name in (*PROCESSES, "gateway"):
        deps = services[name]["depends_on"]
        for dep in ("rabbitmq", "postgres"):
            assert deps[dep]["condition"] == "service_healthy", (name, dep)
    for name in APP_SERVICES:
        assert services["gateway"]["depends_on"][name]["condition"] == "service_healthy"


def test_service_healthchecks_use_the_healthcheck_module():
    services = _load_compose()["services"]
    for name in APP_SERVICES:
        assert services[name]["healthcheck"]["test"] == [
            "CMD", "python", "-m", "services.common.healthcheck", name,
        ]
    gateway_probe = " ".join(services["gateway"]["healthcheck"]["test"])
    assert gateway_probe.startswith("CMD python -c") and "/healthz" in gateway_probe
    assert "curl" not in gateway_probe and "wget" not in gateway_probe  # not in slim images


def test_mail_goes_to_the_catcher_whose_web_view_stays_on_this_machine():
    services = _load_compose()["services"]
    assert re.fullmatch(r"axllent/mailpit:v\d+\.\d+\.\d+", services["mailpit"]["image"]), "a pinned version"
    assert services["mailpit"]["ports"] == ["127.0.0.1:8025:8025"]
    env = services["accounts"]["environment"]
    assert env["SMTP_HOST"] == "${SMTP_HOST:-mailpit}" and env["SMTP_PORT"] == "${SMTP_PORT:-1025}"
    assert env["FLATTR_PUBLIC_URL"].startswith("${FLATTR_PUBLIC_URL:-http")  # the links in mails
    for name in (*PROCESSES, "gateway"):
        if name != "accounts":
            assert not {k for k in services[name]["environment"] if k.startswith(("SMTP_", "MAIL_"))}, f"only accounts sends mail, not {name}"


def test_clicks_can_be_scaled():
    clicks = _load_compose()["services"]["clicks"]
    assert "container_name" not in clicks
    assert "ports" not in clicks, "a fixed host port would make a second replica fail to start"
    assert clicks["deploy"]["replicas"] >= 2


def test_each_app_service_gets_the_broker_and_only_its_own_database():
    services = _load_compose()["services"]
    for name in PROCESSES:
        env = services[name]["environment"]
        assert env["AMQP_URI"].startswith("amqp://") and "@rabbitmq:5672/" in env["AMQP_URI"], name
        url = env[DB_URL_KEY[name]]
        assert url.startswith("postgresql+psycopg2://") and url.endswith("@postgres:5432/flattr"), name
        others = set(DB_URL_KEY.values()) - {DB_URL_KEY[name]}
        assert not others & set(env), f"{name} must not be handed another service's database"
    gateway_env = services["gateway"]["environment"]
    assert gateway_env["AMQP_URI"].startswith("amqp://")
    assert not set(DB_URL_KEY.values()) & set(gateway_env), "the gateway reaches data only by RPC"


def test_gateway_is_published_on_this_machine_only_unless_told_otherwise():
    gateway = interpolate(_load_compose(), env=GIVEN_SECRETS)["services"]["gateway"]
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"  # inside its container
    assert str(gateway["environment"]["GATEWAY_PORT"]) == "8000"
    assert gateway["ports"] == ["127.0.0.1:8000:8000"]
    exposed = interpolate(_load_compose(), env={**GIVEN_SECRETS, "GATEWAY_PUBLISH": "0.0.0.0:8000"})["services"]["gateway"]
    assert exposed["ports"] == ["0.0.0.0:8000:8000"]
    # links are built from the public address, which defaults to the published one
    assert gateway["environment"]["FLATTR_PUBLIC_URL"] == "http://localhost:8000"


def test_compose_environment_names_are_declared_settings():
    from services.common import settings

    declared = {s.name for s in settings.SETTINGS}
    for name in (*PROCESSES, "gateway"):
        unknown = set(_load_compose()["services"][name]["environment"]) - declared
        assert not unknown, f"{name}: {unknown} not in services/common/settings.py"


def test_compose_holds_no_literal_secrets():
    services = _load_compose()["services"]
    for key in SECRET_KEYS:
        value = services["gateway"]["environment"][key]
        (var,) = _variables(value)
        assert value == f"${{{var[0]}{var[1]}{var[2]}}}", f"{key} must come from the environment"
        # required, or (the admin token) empty by default: the admin endpoints are then off
        assert var[0] == key and (var[1] == ":?" or (var[1] == ":-" and var[2] == "")), f"{key} has a working default"
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            value = str(value)
            if re.search(r"PASSWORD|PASS$|SECRET|TOKEN", key):
                assert value.startswith("${") and value.endswith("}"), (name, key)
                assert "changeme" not in value and ":?" in value or value.endswith(":-}"), (name, key)
            # a credential inside a URL must be interpolated too, and required
            for cred in re.findall(r"://[^:/@]+:([^@]+)@", value):
                assert cred.startswith("${") and ":?" in cred, (name, key)


# --------------------------------------------------------------------------- health-check module


def test_healthcheck_command(monkeypatch, capsys):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        import nameko.standalone.rpc

    from services.common import healthcheck

    calls = []

    class FakeProxy:
        def __init__(self, config, timeout):
            calls.append((config, timeout))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __getattr__(self, service):
            if service == "broken":
                raise RuntimeError("no answer")
            return type("Service", (), {"health": staticmethod(lambda: {"service": service, "ok": True})})

    monkeypatch.setattr(nameko.standalone.rpc, "ClusterRpcProxy", FakeProxy)
    monkeypatch.setenv("AMQP_URI", "amqp://u:p@broker:5672//")
    assert healthcheck.main(["clicks"]) == 0
    assert calls == [({"AMQP_URI": "amqp://u:p@broker:5672//"}, 5)]
    assert healthcheck.main(["broken"]) == 1
    assert "no answer" in capsys.readouterr().err
    assert healthcheck.main([]) == 2

    monkeypatch.delenv("AMQP_URI")
    healthcheck.main(["clicks"])
    assert calls[-1][0] == {"AMQP_URI": "amqp://guest:guest@127.0.0.1:5672//"}


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_uses_python_311_slim():
    instructions = _dockerfile_instructions()
    froms = [args for ins, args in instructions if ins == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", froms[0])


def test_dockerfile_installs_requirements_without_cache():
    instructions = _dockerfile_instructions()
    copies = [i for i, (ins, args) in enumerate(instructions) if ins == "COPY" and "requirements.txt" in args]
    installs = [
        i for i, (ins, args) in enumerate(instructions)
        if ins == "RUN" and re.search(r"pip install\b.*-r requirements\.txt", args)
    ]
    assert copies and installs and copies[0] < installs[0], "copy requirements.txt, then install it"
    assert "--no-cache-dir" in instructions[installs[0]][1]
    code = [i for i, (ins, args) in enumerate(instructions) if ins == "COPY" and args.split()[0].rstrip("/") == "services"]
    assert code and code[0] > installs[0], "code after dependencies, so code edits keep the pip layer"
    assert not any(ins in ("COPY", "ADD") and args.split()[0] == "." for ins, args in instructions)


def test_dockerfile_runs_as_non_root_matching_kubernetes():
    users = [args for ins, args in _dockerfile_instructions() if ins == "USER"]
    assert users, "no USER: the processes would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "numeric USER so that Kubernetes' runAsNonRoot can verify it"
    for name, deployment in _k8s("Deployment").items():
        assert str(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == user, name


def test_dockerfile_default_command_is_the_gateway():
    instructions = _dockerfile_instructions()
    cmd = [args for ins, args in instructions if ins == "CMD"][-1]
    assert _exec_form(cmd) == ["python", "-m", "services.gateway"]
    env = " ".join(args for ins, args in instructions if ins == "ENV")
    assert "GATEWAY_HOST=0.0.0.0" in env


def test_dockerignore_keeps_the_context_small():
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", ".venv"} <= entries
    assert any("__pycache__" in e for e in entries)
    assert any(".pytest_cache" in e for e in entries)


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def k8s_versions() -> tuple[str, ...]:
    from kubernetes_validate import utils

    return (K8S_MIN_VERSION, utils.major_minor(utils.latest_version()))


def test_kubernetes_manifests_validate(k8s_versions):
    import kubernetes_validate

    # KEDA's custom resources are checked against KEDA's own CRDs (test_k8s_scaling.py)
    docs = [(f, d) for f, d in k8s_docs() if (d["apiVersion"], d["kind"]) not in crd_schemas()]
    assert docs
    for version in k8s_versions:
        for filename, doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{filename} {doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")


def test_kubernetes_validation_is_not_vacuous(k8s_versions):
    import kubernetes_validate

    deployment = _k8s("Deployment")["gateway"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, k8s_versions[-1], strict=True)


def test_clicks_is_its_own_independently_scaled_deployment():
    deployments = _k8s("Deployment")
    assert set(deployments) == {*PROCESSES, "gateway"}
    clicks = deployments["clicks"]
    assert "replicas" not in clicks["spec"], "its HorizontalPodAutoscaler owns the replica count"
    (container,) = clicks["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "services.clicks"]
    hpa = _k8s("HorizontalPodAutoscaler")["clicks"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clicks"}
    assert 3 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"


def test_deployments_are_consistent_and_probed():
    image = set()
    for name, deployment in _k8s("Deployment").items():
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        (container,) = pod["containers"]
        image.add(container["image"])
        assert container["command"] == ["python", "-m", COMMANDS[name]], name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container, (name, probe)
        if name in PROCESSES:
            assert container["readinessProbe"]["exec"]["command"] == PROBES[name]
            # the probe's RPC waits up to 5 s, plus the interpreter's start-up
            assert container["readinessProbe"]["timeoutSeconds"] > 5, name
        else:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert len(image) == 1, "every process runs the one platform image"


def test_settings_come_from_the_configmap_and_the_secret():
    from services.common import settings

    declared = {s.name for s in settings.SETTINGS}
    (config,) = _k8s("ConfigMap").values()
    secret = _k8s("Secret")[PLATFORM_SECRET]
    assert set(config["data"]) <= declared
    assert set(secret["stringData"]) <= declared
    assert not set(config["data"]) & set(secret["stringData"])
    assert config["data"]["GATEWAY_HOST"] == "0.0.0.0"
    for name, deployment in _k8s("Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}], name
        secret_env = {}
        for var in container["env"]:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"], (name, var)
            secret_env[var["name"]] = ref["key"]
        assert secret_env.get("AMQP_URI") == "AMQP_URI", name
        db_keys = {k for k in secret_env if k.endswith("_DATABASE_URL")}
        if name in PROCESSES:
            assert db_keys == {DB_URL_KEY[name]}, f"{name} gets its own database URL and no other"
        else:
            assert not db_keys and {*SECRET_KEYS} <= set(secret_env), name


def test_secret_is_a_template_that_is_never_applied_by_accident():
    assert not any(d["kind"] == "Secret" for f, d in k8s_docs() if f.endswith(".yaml")), (
        "a Secret in deploy/k8s/*.yaml would be applied by `kubectl apply -f deploy/k8s/`"
    )
    secrets = _k8s("Secret")
    assert set(secrets) == {PLATFORM_SECRET, "keda-rabbitmq"}
    for name, secret in secrets.items():
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{name} {key} must be an obvious placeholder"


def test_gateway_service_routes_to_the_gateway_pods():
    service = _k8s("Service")["gateway"]
    pod = _k8s("Deployment")["gateway"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    port_names = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names


def test_everything_is_namespaced_and_the_namespace_is_applied_first():
    files = sorted(p.name for p in K8S_DIR.glob("*.yaml"))
    namespaces = [d for f, d in k8s_docs() if d["kind"] == "Namespace"]
    assert len(namespaces) == 1
    first = yaml.safe_load((K8S_DIR / files[0]).read_text())
    assert first["kind"] == "Namespace", "kubectl apply -f deploy/k8s/ applies files in name order"
    for _, doc in k8s_docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespaces[0]["metadata"]["name"]


def test_settled_clicks_are_archived_monthly_to_a_volume_with_the_clicks_database_only():
    job = _k8s("CronJob")["click-archive"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid", "two archive runs must not overlap"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:4] == ["python", "-m", "services.clicks.ops", "archive"]
    archive_dir = container["command"][container["command"].index("--to") + 1]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == archive_dir
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] in _k8s("PersistentVolumeClaim")
    secret_keys = {v["valueFrom"]["secretKeyRef"]["key"] for v in container["env"]}
    assert secret_keys == {"AMQP_URI", "CLICKS_DATABASE_URL"}, "it asks settlement over the broker, reads no other schema"
    assert pod["securityContext"]["runAsNonRoot"] is True
