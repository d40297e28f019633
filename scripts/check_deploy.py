#!/usr/bin/env python3
"""Offline checks of deploy/ that need a real parser, and the extraction of
every CLARITY_* setting the deployment files give the server.

    check_deploy.py check   structural checks; exit 1 with every problem listed
    check_deploy.py env     print the settings as JSON (for the Rust test
                            clarity-core/tests/deploy_settings.rs, which asks
                            clarity's own Config whether it accepts them)

Needs PyYAML, python-hcl2 and compose-spec (scripts/requirements-test.txt).
Schema validation (kubernetes-validate), linting (hadolint, yamllint,
shellcheck) and promtool run from scripts/test itself.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
TERRAFORM = DEPLOY / "terraform" / "aws"
# Everything the server reads from the environment starts with this.
PREFIX = "CLARITY_"


def unquote(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def interpolate(value):
    """Compose's `${NAME:-default}` and `${NAME}` with nothing set in the
    environment (the file's defaults), and `$$` as a literal `$`."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value
    pattern = r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}"
    return re.sub(pattern, lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)


def compose_document():
    """deploy/compose.yaml as Compose reads it with no variables set."""
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


def k8s_documents():
    """(file name, document) of every manifest under deploy/k8s."""
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.relative_to(ROOT).as_posix(), doc


def terraform_blocks(kind):
    """{name: body} of every `kind` block (variable, output, locals...) in the module."""
    blocks = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        parsed = hcl2.load(path.open())
        for item in parsed.get(kind, []):
            if kind == "locals":
                blocks.update({k: v for k, v in item.items() if not k.startswith("__")})
            else:
                for name, body in item.items():
                    blocks[unquote(name)] = body
    return blocks


def terraform_value(expr, variables):
    """A literal, or `${var.x}` / `${tostring(var.x)}` resolved from defaults; None otherwise."""
    def default(name):
        body = variables.get(name, {})
        return None if "default" not in body else str(unquote(body["default"]))

    text = unquote(expr)
    whole = re.fullmatch(r"\$\{(?:tostring\()?var\.(\w+)\)?\}", text)
    if whole:
        return default(whole.group(1))

    missing = []

    def sub(match):
        value = default(match.group(1))
        if value is None:
            missing.append(match.group(1))
            return ""
        return value

    text = re.sub(r"\$\{var\.(\w+)\}", sub, text)
    if missing or "${" in text:
        return None
    return text


# --- NetworkPolicy semantics, enough for deploy/k8s: matchLabels selectors,
# namespace and pod selectors, ipBlock, numbered ports.

def selects(selector, labels):
    """Whether a label selector (matchLabels only) selects `labels`."""
    if selector.get("matchExpressions"):
        raise ValueError("matchExpressions are not evaluated by check_deploy.py")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def peer_matches(peer, policy_ns, endpoint):
    """Whether one from/to entry admits `endpoint`: {"ns", "labels"} for a pod, {"ip"} outside."""
    if "ipBlock" in peer:
        return "ip" in endpoint and endpoint["ip"] == "external"
    if "ip" in endpoint:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": endpoint["ns"]}):
            return False
    elif endpoint["ns"] != policy_ns:
        return False
    return selects(peer.get("podSelector") or {}, endpoint["labels"])


def port_matches(ports, port, protocol):
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        if not isinstance(p["port"], int):
            raise ValueError(f"named port {p['port']!r} is not evaluated by check_deploy.py")
        if p["port"] <= port <= p.get("endPort", p["port"]):
            return True
    return False


def network_allows(policies, direction, pod, peer, port, protocol="TCP"):
    """Whether the NetworkPolicies let `pod` (ns, labels) receive from (Ingress)
    or send to (Egress) `peer` on `port`: a pod no policy selects for the
    direction is open; a selected pod only has what some rule allows."""
    key = "ingress" if direction == "Ingress" else "egress"
    side = "from" if direction == "Ingress" else "to"
    isolated = False
    for policy in policies:
        ns = policy["metadata"]["namespace"]
        spec = policy["spec"]
        if ns != pod["ns"] or not selects(spec.get("podSelector") or {}, pod["labels"]):
            continue
        if direction not in spec.get("policyTypes", ["Ingress"]):
            continue
        isolated = True
        for rule in spec.get(key) or []:
            peers = rule.get(side)
            if (not peers or any(peer_matches(x, ns, peer) for x in peers)) and port_matches(rule.get("ports"), port, protocol):
                return True
    return not isolated


def network_policy_problems(port):
    """The intended flows of deploy/k8s/networkpolicy.yaml, allowed and denied."""
    policies = [doc for _, doc in k8s_documents() if doc.get("kind") == "NetworkPolicy"]
    pods = {}
    for file, doc in k8s_documents():
        template = doc.get("spec", {}).get("template")
        if doc.get("kind") in ("Deployment", "Job") and template:
            pods[f"{doc['kind']}/{doc['metadata']['name']}"] = {
                "ns": doc["metadata"]["namespace"],
                "labels": template["metadata"]["labels"],
            }
    server = next(p for name, p in pods.items() if name.startswith("Deployment/"))
    ns = lambda name, **labels: {"ns": name, "labels": labels}  # noqa: E731
    # (pod, direction, peer, port, protocol, allowed?, why)
    expected = [
        (server, "Ingress", ns("ingress-nginx", app="controller"), port, "TCP", True, "the ingress controller reaches the API"),
        (server, "Ingress", ns("monitoring", app="prometheus"), port, "TCP", True, "Prometheus scrapes /metrics"),
        (server, "Ingress", ns("ingress-nginx", app="controller"), 22, "TCP", False, "only the server's port is open"),
        (server, "Ingress", ns("default", app="anything"), port, "TCP", False, "other namespaces are shut out"),
        (server, "Ingress", ns("clarity", app="other"), port, "TCP", False, "other pods of the namespace are shut out"),
        (server, "Ingress", {"ip": "external"}, port, "TCP", False, "nothing from outside the cluster but through the ingress"),
    ]
    for name, pod in pods.items():
        expected += [
            (pod, "Egress", ns("kube-system", **{"k8s-app": "kube-dns"}), 53, "UDP", True, f"{name}: DNS"),
            (pod, "Egress", ns("kube-system", **{"k8s-app": "kube-dns"}), 53, "TCP", True, f"{name}: DNS over TCP"),
            (pod, "Egress", ns("database", app="postgres"), 5432, "TCP", True, f"{name}: PostgreSQL"),
            (pod, "Egress", ns("database", app="redis"), 6379, "TCP", True, f"{name}: Redis"),
            (pod, "Egress", ns("openbao", app="openbao"), 8200, "TCP", True, f"{name}: OpenBao"),
            (pod, "Egress", ns("database", app="postgres"), 22, "TCP", False, f"{name}: only the database ports"),
            (pod, "Egress", ns("kube-system", app="api"), 443, "TCP", False, f"{name}: not the Kubernetes API"),
            (pod, "Egress", {"ip": "external"}, 443, "TCP", False, f"{name}: nothing leaves the cluster"),
            (pod, "Egress", ns("clarity", app="other"), port, "TCP", False, f"{name}: not other pods"),
        ]
    expected.append(
        (next(p for n, p in pods.items() if n.startswith("Job/")), "Ingress", ns("ingress-nginx", app="controller"), port, "TCP", False, "nothing reaches the migration job")
    )
    problems = []
    for pod, direction, peer, p, protocol, want, why in expected:
        got = network_allows(policies, direction, pod, peer, p, protocol)
        if got != want:
            verb = "allows" if got else "denies"
            problems.append(f"deploy/k8s/networkpolicy.yaml {verb} {direction.lower()} {peer} port {p}/{protocol} for {pod['labels']}: {why}")
    return problems, len(expected)


def settings():
    """Every CLARITY_* variable the deployment files set, grouped by deployment.

    Each entry: {"deployment", "file", "var", "value"}; value is None when the
    file takes it from a secret or from a variable without a default.
    """
    out = []

    def add(deployment, file, var, value):
        out.append({"deployment": deployment, "file": file, "var": var, "value": value})

    compose = compose_document()
    for name, service in compose["services"].items():
        for var, value in (service.get("environment") or {}).items():
            if var.startswith(PREFIX):
                add(f"compose:{name}", "deploy/compose.yaml", var, str(value))
    # The secret settings compose passes in a TOML file (CLARITY_CONFIG).
    template = DEPLOY / "compose" / "clarity.toml.in"
    parsed = tomllib.loads(re.sub(r"@\w+@", "sample", template.read_text()))
    for section, keys in parsed.items():
        for key, value in keys.items():
            var = f"{PREFIX}{section}_{key}".upper()
            for name, service in compose["services"].items():
                if (service.get("environment") or {}).get("CLARITY_CONFIG"):
                    add(f"compose:{name}", "deploy/compose/clarity.toml.in", var, str(value))

    configmaps = {}
    for file, doc in k8s_documents():
        if doc.get("kind") == "ConfigMap":
            configmaps[doc["metadata"]["name"]] = (file, doc.get("data") or {})
    for file, doc in k8s_documents():
        spec = pod_spec(doc)
        if spec is None:
            continue
        deployment = f"k8s:{doc['kind']}/{doc['metadata']['name']}"
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                cm_file, data = configmaps[source["configMapRef"]["name"]]
                for var, value in data.items():
                    if var.startswith(PREFIX):
                        add(deployment, cm_file, var, str(value))
            for env in container.get("env", []):
                if env["name"].startswith(PREFIX):
                    add(deployment, file, env["name"], env.get("value"))

    variables = terraform_blocks("variable")
    locals_ = terraform_blocks("locals")
    for var, expr in locals_["clarity_environment"].items():
        add("terraform:ecs", "deploy/terraform/aws/ecs.tf", var, terraform_value(expr, variables))
    for var in locals_["clarity_secrets"]:
        add("terraform:ecs", "deploy/terraform/aws/ecs.tf", var, None)
    return out


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def listen_port(entries, deployment):
    values = [e["value"] for e in entries if e["deployment"] == deployment and e["var"] == "CLARITY_LISTEN"]
    if len(values) != 1 or values[0] is None:
        return None
    return int(values[0].rsplit(":", 1)[1])


def check():
    problems = []
    entries = settings()

    # --- compose: valid against the Compose specification, ports agree.
    import compose_spec  # noqa: PLC0415 (only `check` needs it)

    compose = compose_document()
    try:
        # PyYAML resolves the merge keys (<<) compose files may use.
        compose_spec.PyCompose.from_json(json.dumps(compose))
    except ValueError as e:
        problems.append(f"deploy/compose.yaml: not a valid Compose file: {e}")
    port = listen_port(entries, "compose:clarity")
    published = [str(p).rsplit(":", 1)[1] for p in compose["services"]["clarity"].get("ports", [])]
    if port is None or published != [str(port)]:
        problems.append(f"deploy/compose.yaml: clarity publishes container ports {published}, CLARITY_LISTEN port is {port}")
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if ":" not in image or image.endswith(":latest"):
            problems.append(f"deploy/compose.yaml: service {name} has an unpinned image {image!r}")
    for name, secret in compose.get("secrets", {}).items():
        if "file" not in secret:
            problems.append(f"deploy/compose.yaml: secret {name} must come from a file")

    # --- Kubernetes: ports, probes, hardening, kustomization.
    services = [doc for _, doc in k8s_documents() if doc.get("kind") == "Service"]
    for file, doc in k8s_documents():
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f"{file} ({doc['kind']}/{doc['metadata']['name']})"
        port = listen_port(entries, f"k8s:{doc['kind']}/{doc['metadata']['name']}")
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            problems.append(f"{where}: runAsNonRoot is not set")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: container {c['name']} must forbid privilege escalation and use a read-only root")
            if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
                problems.append(f"{where}: container {c['name']} needs resource requests and limits")
            if c["image"].endswith(":latest") or ":" not in c["image"]:
                problems.append(f"{where}: container {c['name']} has an unpinned image")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if doc["kind"] == "Deployment":
                if list(ports.values()) != [port]:
                    problems.append(f"{where}: container ports {ports} do not match CLARITY_LISTEN port {port}")
                probes = {k: c.get(k, {}).get("httpGet", {}) for k in ("livenessProbe", "readinessProbe")}
                if probes["livenessProbe"].get("path") != "/health/live" or probes["readinessProbe"].get("path") != "/health/ready":
                    problems.append(f"{where}: liveness must probe /health/live and readiness /health/ready")
                for kind, probe in probes.items():
                    target = probe.get("port")
                    if ports.get(target, target) != port:
                        problems.append(f"{where}: {kind} probes port {target}, not the listen port {port}")
                for svc in services:
                    for p in svc["spec"]["ports"]:
                        target = p["targetPort"]
                        if ports.get(target, target) != port:
                            problems.append(f"Service {svc['metadata']['name']}: targetPort {target} is not the listen port {port}")
    # NetworkPolicies: evaluated for every intended flow, and a few that must not exist.
    flow_problems, flows = network_policy_problems(listen_port(entries, next(
        f"k8s:{doc['kind']}/{doc['metadata']['name']}" for _, doc in k8s_documents() if doc.get("kind") == "Deployment")))
    problems += flow_problems
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    expected = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "migrate-job.yaml"}
    if listed != expected:
        problems.append(f"deploy/k8s/kustomization.yaml lists {sorted(listed)}, the directory holds {sorted(expected)}")
    for file, doc in k8s_documents():
        if doc.get("kind") == "ServiceMonitor":
            names = {p.get("name") for svc in services for p in svc["spec"]["ports"]}
            for endpoint in doc["spec"]["endpoints"]:
                if endpoint.get("port") not in names or endpoint.get("path") != "/metrics":
                    problems.append(f"{file}: endpoint {endpoint} must scrape /metrics on a named Service port {sorted(names)}")
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            problems.append(f"{file}: a Secret with values; secrets are created out of band")

    # --- Terraform: documented variables and outputs, port agreement.
    readme = (TERRAFORM / "README.md").read_text()
    for kind in ("variable", "output"):
        for name, body in terraform_blocks(kind).items():
            if not unquote(body.get("description", "")):
                problems.append(f"deploy/terraform/aws: {kind} {name} has no description")
            if f"| `{name}` |" not in readme:
                problems.append(f"deploy/terraform/aws/README.md does not document {kind} {name}")
    port = listen_port(entries, "terraform:ecs")
    default_port = unquote(terraform_blocks("variable")["container_port"]["default"])
    if port is None or port != int(default_port):
        problems.append(f"deploy/terraform/aws: CLARITY_LISTEN port {port} is not var.container_port ({default_port})")

    # --- Nothing that looks like a secret value in any deployment file.
    secretish = re.compile(r"(postgres(ql)?|rediss?)://[^:@\s/]*:[^@\s$]{4,}@", re.I)
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and "prebuilt" not in path.parts and path.suffix in {".yaml", ".yml", ".tf", ".hcl", ""}:
            text = path.read_text(errors="replace")
            if secretish.search(text):
                problems.append(f"{path.relative_to(ROOT)}: a URL with an inline password")

    for problem in problems:
        print(f"deploy: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"deploy: compose, {sum(1 for _ in k8s_documents())} Kubernetes objects and the Terraform module agree ({len(entries)} settings); NetworkPolicies give {flows} flows as intended")
    return 0


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "env":
        json.dump(settings(), sys.stdout, indent=1)
        print()
        return 0
    if command == "check":
        return check()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
