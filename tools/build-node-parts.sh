#!/usr/bin/env bash
# Builds the node rig's Go parts once and caches them in $BOND_INJECTOR_CACHE/node/, keyed by input:
#   multus-daemon     Multus in thick mode (its daemon and the multus-shim CNI binary), from
#   multus-shim       ../shared/peers/multus-cni-<commit>.tar.gz (the Go module proxy refuses the
#                     module itself; its dependencies come from the proxy)
#   sriov-dp-standin  the stand-in SR-IOV device plugin  } tools/go/node: stand-ins for hardware
#   vf-standin        the stand-in leg plugin            } this machine does not have
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BOND_INJECTOR_CACHE:-$ROOT/.cache}
PEERS=${BOND_INJECTOR_PEERS:-$ROOT/../shared/peers}
OUT="$CACHE/node"
# -mod=readonly: each build takes its modules from its own go.mod and go.sum (the peers' tarballs
# carry theirs; tools/go/node is committed) and never resolves or rewrites them.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly"
unset GONOSUMDB GONOSUMCHECK GOINSECURE GOPRIVATE GONOPROXY
say() { echo "build-node-parts: $*" >&2; }
mkdir -p "$OUT"
exec 9>"$OUT/.lock" && flock 9

tarball=$(ls "$PEERS"/multus-cni-*.tar.gz 2>/dev/null | head -n1 || true)
[ -n "$tarball" ] || { say "no multus-cni-*.tar.gz in $PEERS"; exit 1; }
key="$(basename "$tarball") $(go env GOVERSION)"
if [ "$(cat "$OUT/.multus.stamp" 2>/dev/null)" != "$key" ] || [ ! -x "$OUT/multus-shim" ]; then
  say "building Multus (thick: daemon and shim) from $(basename "$tarball")"
  src="$CACHE/peers/src"
  mkdir -p "$src" && tar -xzf "$tarball" -C "$src"
  rm -rf "$OUT/multus.tmp" && mkdir "$OUT/multus.tmp"
  (cd "$src/multus-cni" && nice go build -trimpath -ldflags "-s -w" -o "$OUT/multus.tmp/" \
    ./cmd/multus-daemon ./cmd/multus-shim)
  mv "$OUT"/multus.tmp/* "$OUT/" && rmdir "$OUT/multus.tmp" && echo "$key" >"$OUT/.multus.stamp"
  rm -f "$OUT/multus" # the thin plugin of earlier builds
fi

key="$(cd "$ROOT/tools/go/node" && cat go.mod go.sum ./*/*.go | sha256sum | cut -c1-16) $(go env GOVERSION)"
if [ "$(cat "$OUT/.standins.stamp" 2>/dev/null)" != "$key" ] || [ ! -x "$OUT/vf-standin" ]; then
  say "building the SR-IOV stand-ins"
  (cd "$ROOT/tools/go/node" && nice go build -trimpath -ldflags "-s -w" -o "$OUT/" ./...)
  echo "$key" >"$OUT/.standins.stamp"
fi
