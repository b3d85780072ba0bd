#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Offline checks of deploy/ (ctest deploy_*; each part is its own test):
#
#   check.sh PART SRC [BUILD]
#
#   kustomize  `kubectl kustomize` builds deploy/k8s and every overlay
#   yamllint   yamllint -s over deploy/ (deploy/.yamllint)
#   dockerfile the Dockerfile's contract (structure.py) and, when installed,
#              dockerfilelint (an npm package; not part of scripts/deps.sh)
#   schema     every rendered object against the Kubernetes 1.27 schemas of
#              the npm package kubernetes-models@4 (+ yaml), when installed
#              (NODE_PATH or the global npm root)
#   structure  tests/deploy/structure.py on every rendered overlay, its
#              self-test (each check fails on a broken copy), the dashboard;
#              without kubectl, on the base assembled by structure.py
#   config     deploy/gen-config.py --check against BUILD/server/latticekvd
#   image      deploy/build-image-steps.sh cpu into BUILD/deploy-image
#
# Exit 0 pass, 1 fail, 77 skip (a tool is missing; the message says which).
set -eu
part=$1
src=$(cd "$2" && pwd)
build=${3:-$src/build}
py=/usr/bin/python3
skip() { echo "SKIP: $*"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every kustomization root: deploy/k8s itself and each overlay.
roots() {
  echo "$src/deploy/k8s"
  for d in "$src"/deploy/k8s/overlays/*/; do
    [ -f "$d/kustomization.yaml" ] && echo "${d%/}"
  done
}
render() {
  command -v kubectl >/dev/null || skip "kubectl not found: kustomizations not rendered"
  for r in $(roots); do
    out=$tmp/$(echo "${r#"$src"/}" | tr / _).yaml
    kubectl kustomize "$r" >"$out" || { echo "FAIL: kubectl kustomize ${r#"$src"/}"; exit 1; }
    echo "rendered ${r#"$src"/}: $(grep -c '^kind:' "$out") objects"
  done
}

case $part in
kustomize)
  render
  ;;
yamllint)
  command -v yamllint >/dev/null || skip "yamllint not found (apt-get install yamllint)"
  yamllint -s -c "$src/deploy/.yamllint" "$src/deploy"
  echo "yamllint: deploy/ is clean"
  ;;
dockerfile)
  [ -x $py ] || skip "$py not found"
  $py "$src/tests/deploy/structure.py" dockerfile "$src/deploy/Dockerfile"
  if command -v dockerfilelint >/dev/null; then
    dockerfilelint -c "$src/deploy" "$src/deploy/Dockerfile"
  else
    echo "SKIP (this part only): dockerfilelint not found; it is an npm package" \
      "(npm install dockerfilelint), not installed by scripts/deps.sh"
  fi
  ;;
schema)
  command -v node >/dev/null || skip "node not found: no offline Kubernetes schema validation"
  NODE_PATH=${NODE_PATH:+$NODE_PATH:}$(npm root -g 2>/dev/null || true)
  export NODE_PATH
  node -e 'require("kubernetes-models/package.json"); require("yaml")' 2>/dev/null ||
    skip "npm packages kubernetes-models@4 and yaml not found (npm install kubernetes-models@4 yaml; set NODE_PATH)"
  render
  node "$src/tests/deploy/validate-k8s.cjs" "$tmp"/*.yaml "$src"/deploy/k8s/examples/*.yaml
  ;;
structure)
  $py -c 'import yaml' 2>/dev/null || skip "python3-yaml not installed (apt-get install python3-yaml)"
  $py "$src/tests/deploy/structure.py" dashboard "$src/deploy/grafana/latticekv.json"
  if ! command -v kubectl >/dev/null; then
    echo "kubectl not found: checking deploy/k8s/base as assembled by structure.py;" \
      "overlays and patches are not checked"
    $py "$src/tests/deploy/structure.py" base "$src/deploy/k8s/base"
    exit 0
  fi
  render
  for f in "$tmp"/*.yaml; do
    $py "$src/tests/deploy/structure.py" k8s "$f"
  done
  echo "self-test: each mutation of the GPU objects must be caught"
  $py "$src/tests/deploy/structure.py" self-test "$tmp/deploy_k8s.yaml"
  ;;
config)
  [ -x "$build/server/latticekvd" ] || { echo "FAIL: $build/server/latticekvd not built"; exit 1; }
  # The ConfigMap files and docs/operations.md's generated sections (config
  # reference, capacity tables from the CLI's codec info).
  [ -x "$build/clients/cli/latticekv" ] || { echo "FAIL: $build/clients/cli/latticekv not built"; exit 1; }
  $py "$src/deploy/gen-config.py" --latticekvd "$build/server/latticekvd" \
    --latticekv "$build/clients/cli/latticekv" --check
  ;;
image)
  LKV_IMAGE_JOBS=${LKV_IMAGE_JOBS:-2} sh "$src/deploy/build-image-steps.sh" cpu "$src" \
    "$build/deploy-image/build" "$build/deploy-image/staging"
  ;;
*)
  echo "check.sh: unknown part '$part'" >&2
  exit 2
  ;;
esac
