#!/usr/bin/env bash
# Smoke test of a hack/cluster.sh cluster: hack/k8s/smoke.sh KUBECONFIG
# Checks that the controllers, scheduler, kwok, PodSecurity admission, garbage collection
# and CRD CEL validation work. Uses (and deletes) the namespaces sluice-smoke{,-restricted}.
set -uo pipefail
export KUBECONFIG=${1:?usage: $0 KUBECONFIG}
NS=sluice-smoke RNS=sluice-smoke-restricted
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
k() { kubectl "$@" 2>&1; }
# until_ok SECONDS CMD...
until_ok() { local end=$((SECONDS + $1)); shift; until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 1; done; }

k delete ns $NS $RNS --ignore-not-found --wait=true >/dev/null
k create ns $NS >/dev/null
k create ns $RNS >/dev/null
k label ns $RNS pod-security.kubernetes.io/enforce=restricted >/dev/null

# 1. Deployment -> ReplicaSet -> 2 pods bound to kwok nodes and Running.
k -n $NS create deployment web --image=registry.invalid/web --replicas=2 >/dev/null
running() { [[ $(kubectl -n $NS get pods -l app=web --field-selector=status.phase=Running -o name | wc -l) -eq 2 ]]; }
if until_ok 60 running; then ok "deployment: 2 pods Running on $(kubectl -n $NS get pods -l app=web -o jsonpath='{.items[*].spec.nodeName}')"
else bad "deployment pods not Running: $(k -n $NS get rs,pods -o wide)"; fi

# 2. PodSecurity restricted rejects a privileged pod.
out=$(k -n $RNS run priv --image=registry.invalid/x --overrides='{"spec":{"containers":[{"name":"priv","image":"registry.invalid/x","securityContext":{"privileged":true}}]}}')
if [[ $out == *'violates PodSecurity "restricted'* ]]; then ok "PodSecurity restricted rejects a privileged pod"; else bad "privileged pod: $out"; fi

# 3. Deleting the Deployment garbage-collects its ReplicaSet and pods.
k -n $NS delete deployment web --wait=false >/dev/null
gone() { [[ -z $(kubectl -n $NS get rs,pods -l app=web -o name) ]]; }
if until_ok 60 gone; then ok "garbage collector removed the ReplicaSet and pods"; else bad "leftovers: $(k -n $NS get rs,pods)"; fi

# 4. CRD with x-kubernetes-validations (CEL).
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: smokes.smoke.sluice.dev}
spec:
  group: smoke.sluice.dev
  scope: Namespaced
  names: {plural: smokes, singular: smoke, kind: Smoke}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - {rule: "self.min <= self.max", message: "min must be <= max"}
            properties: {min: {type: integer}, max: {type: integer}}
EOF
k wait --for condition=established crd/smokes.smoke.sluice.dev --timeout=30s >/dev/null
cr() { printf 'apiVersion: smoke.sluice.dev/v1\nkind: Smoke\nmetadata: {name: %s, namespace: %s}\nspec: {min: %s, max: %s}\n' "$@"; }
out=$(cr bad $NS 5 2 | k apply -f -)
if [[ $out == *"min must be <= max"* ]]; then ok "CEL rule rejects a bad object"; else bad "CEL: $out"; fi
out=$(cr good $NS 1 2 | k apply -f -)
if [[ $out == *created* ]]; then ok "CEL rule admits a good object"; else bad "CEL good: $out"; fi

k delete crd smokes.smoke.sluice.dev --wait=false >/dev/null
k delete ns $NS $RNS --wait=false >/dev/null
echo "$pass passed, $fail failed"
((fail == 0))
