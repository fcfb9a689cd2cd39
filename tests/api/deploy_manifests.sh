#!/usr/bin/env bash
# Validates the deploy manifests: deploy/k8s/*.yaml against the Kubernetes OpenAPI schemas
# (kubernetes-validate, offline, from the venv) and deploy/compose.yaml with docker-compose's own
# parser (`config -q`: schema, interpolation, anchors). Usage: deploy_manifests.sh VENV
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=$1
k8s_version=1.33.0

checked=0
for f in deploy/k8s/*.yaml; do
  # --strict: unknown fields are errors, not warnings
  "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$k8s_version" "$f"
  checked=$((checked + 1))
done

# readiness probes on /ready for every workload, and every Deployment/StatefulSet covered by a
# PodDisruptionBudget: what the issue asks of the manifests, checked rather than trusted
"$venv/bin/python" - <<'PY'
import glob, yaml
docs = [d for f in sorted(glob.glob("deploy/k8s/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
assert {w["kind"] for w in workloads} == {"Deployment", "StatefulSet"}, "Deployments and a StatefulSet"
for w in workloads:
    name = w["metadata"]["name"]
    labels = w["spec"]["template"]["metadata"]["labels"]
    for c in w["spec"]["template"]["spec"]["containers"]:
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready", name
        assert w["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for e in c.get("env", []):
            # secrets come from the Secret, never inline
            if e["name"].startswith(("HELIX_TOKEN", "HELIX_GATEWAY_KEY")) or e["name"].endswith(("_URL", "_API_KEY")):
                assert "secretKeyRef" in e.get("valueFrom", {}), f"{name}: {e['name']} inline"
    assert any(all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items()) for p in pdbs), f"{name} has no PodDisruptionBudget"
    assert name in services, f"{name} has no Service"
print(f"k8s: {len(workloads)} workloads with /ready probes, PodDisruptionBudgets and Services")
PY

if command -v docker-compose >/dev/null 2>&1; then
  HELIX_TOKEN_SERVICE=t HELIX_TOKEN_ADMIN=t HELIX_GATEWAY_KEY_DEFAULT=t POSTGRES_PASSWORD=t \
    docker-compose -f deploy/compose.yaml config -q
  compose=checked
else
  echo "docker-compose is missing (Debian package docker-compose)" >&2
  exit 1
fi
echo "deploy manifests: $checked kubernetes files valid, compose $compose"
