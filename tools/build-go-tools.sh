#!/usr/bin/env bash
# Builds the Go parts of the cluster rig once and caches them, keyed by version:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy
#   and CoreDNS (the node rig), cnitool
# (or only those named: build-go-tools.sh cnitool)
# into $BOND_INJECTOR_CACHE/go-tools/<name>-<version>/, symlinked from $BOND_INJECTOR_CACHE/bin.
# Only the Go module proxy is reachable, so everything is built from modules, CGO_ENABLED=0.
#
# Pinned: every module of every build, with its hash. etcd and the Kubernetes binaries build from
# the committed tools/go/etcd and tools/go/k8s (go.mod + go.sum, -mod=readonly: a build never
# resolves anything, and a go.sum mismatch stops it); cnitool and CoreDNS are `go install
# pkg@version`, which builds from that release's own go.mod and go.sum. The module digest is part
# of each cache key. `build-go-tools.sh relock` rewrites tools/go/{k8s,etcd} for the versions
# below (run by `make lock`; review the diff).
#
#   build-go-tools.sh [etcd|k8s|cnitool|coredns ...]   build (all when none are named)
#   build-go-tools.sh relock                           re-derive tools/go/k8s and tools/go/etcd
set -euo pipefail

K8S_VERSION=v1.34.12
ETCD_VERSION=v3.6.16
CNITOOL_VERSION=v1.3.0
COREDNS_VERSION=v1.14.7 # the node rig's cluster DNS

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BOND_INJECTOR_CACHE:-$ROOT/.cache}
TOOLS="$CACHE/go-tools"
BIN="$CACHE/bin"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
unset GONOSUMDB GONOSUMCHECK GOINSECURE GOPRIVATE GONOPROXY # every module checked against go.sum
NICE=(nice -n 10) # two cores shared with the rest of the team
GO_VERSION=$(go env GOVERSION)

say() { echo "build-go-tools: $*" >&2; }

link() { # link <dir> <name>: $BIN/<name> -> <dir>/<name> (relative, atomic rename)
  ln -sfn "../${1#"$CACHE"/}/$2" "$BIN/.$2.tmp" && mv -Tf "$BIN/.$2.tmp" "$BIN/$2"
}

cached() { # cached <dir> <key> <names...>: the stamp matches and every binary is there
  local dir=$1 key=$2 n
  shift 2
  [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$key" ] || return 1
  for n in "$@"; do [ -x "$dir/$n" ] || return 1; done
}

finish() { # finish <tmpdir> <dir> <key> <names...>: publish a finished build and link it
  local tmp=$1 dir=$2 key=$3 n
  shift 3
  echo "$key" >"$tmp/.stamp"
  rm -rf "$dir" && mv "$tmp" "$dir"
  for n in "$@"; do link "$dir" "$n"; done
}

timed() { # timed <label> <cmd...>: run and report the wall time
  local label=$1 start=$SECONDS
  shift
  "$@"
  say "$label built in $((SECONDS - start)) s"
}

module_key() { # module_key <dir>: the digest of a build module's go.mod and go.sum
  cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-16
}

requires() { # requires <dir> <module> <version>: the committed module pins that version
  grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2 $3( |$)" "$1/go.mod" || {
    say "$1/go.mod does not require $2 $3 (the version this script pins): run make lock"
    exit 1
  }
}

relock_k8s() { # tools/go/k8s from k8s.io/kubernetes@$K8S_VERSION's own go.mod
  local mod="$ROOT/tools/go/k8s" staging_version="v0.${K8S_VERSION#v1.}" modfile
  go mod download k8s.io/kubernetes@"$K8S_VERSION"
  modfile=$(go mod download -json k8s.io/kubernetes@"$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # Every `k8s.io/x => ./staging/src/k8s.io/x` line of that version's go.mod becomes
  # `k8s.io/x => k8s.io/x v0.<minor>.<patch>` here (the published staging release).
  local edits=(-require="k8s.io/kubernetes@$K8S_VERSION") m
  for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$modfile"); do
    edits+=(-replace="$m=$m@$staging_version")
  done
  ((${#edits[@]} > 20)) || { say "found only $((${#edits[@]} - 1)) staging modules in $modfile"; exit 1; }
  (cd "$mod" && go mod edit "${edits[@]}" && "${NICE[@]}" go mod tidy)
}

relock_etcd() {
  (cd "$ROOT/tools/go/etcd" && go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    "${NICE[@]}" go mod tidy)
}

build_k8s() {
  local mod="$ROOT/tools/go/k8s" dir="$TOOLS/k8s-$K8S_VERSION"
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
  requires "$mod" k8s.io/kubernetes "$K8S_VERSION"
  local key="k8s $K8S_VERSION $GO_VERSION $(module_key "$mod")"
  if ! cached "$dir" "$key" "${names[@]}"; then
    say "building ${names[*]} $K8S_VERSION (cold: several minutes)"
    local info commit date
    info=$(cd "$mod" && go mod download -json k8s.io/kubernetes | sed -n 's/.*"Info": "\(.*\)".*/\1/p')
    commit=$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$info")
    date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
    local minor=${K8S_VERSION#v1.} ldflags="-s -w" p
    minor=${minor%%.*}
    # helm compares a chart's kubeVersion with the server's gitVersion: stamp the real one.
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ldflags+=" -X $p.gitCommit=${commit:-unknown} -X $p.gitTreeState=clean -X $p.buildDate=${date:-1970-01-01T00:00:00Z}"
    done
    local tmp="$dir.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$mod" && timed "${names[*]}" "${NICE[@]}" go build -mod=readonly -trimpath -ldflags "$ldflags" \
      -o "$tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-proxy)
    finish "$tmp" "$dir" "$key" "${names[@]}"
  fi
  for n in "${names[@]}"; do link "$dir" "$n"; done
}

build_etcd() {
  local mod="$ROOT/tools/go/etcd" dir="$TOOLS/etcd-$ETCD_VERSION"
  requires "$mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  local key="etcd $ETCD_VERSION $GO_VERSION $(module_key "$mod")"
  if ! cached "$dir" "$key" etcd; then
    say "building etcd $ETCD_VERSION"
    local tmp="$dir.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$mod" && timed etcd "${NICE[@]}" go build -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
    finish "$tmp" "$dir" "$key" etcd
  fi
  link "$dir" etcd
}

go_install() { # go_install <name> <package> <version>: a plain `go install pkg@version`
  local name=$1 pkg=$2 version=$3
  local dir="$TOOLS/$name-$version" key="$name $pkg@$version $GO_VERSION"
  if ! cached "$dir" "$key" "$name"; then
    say "building $name ($pkg@$version)"
    local tmp="$dir.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    GOBIN="$tmp/gobin" timed "$name" "${NICE[@]}" go install -trimpath -ldflags "-s -w" "$pkg@$version"
    mv "$tmp/gobin/$(basename "$pkg")" "$tmp/$name" && rmdir "$tmp/gobin"
    finish "$tmp" "$dir" "$key" "$name"
  fi
  link "$dir" "$name"
}

mkdir -p "$BIN" "$TOOLS"
exec 9>"$TOOLS/.lock" && flock 9 # concurrent `make deps` runs wait here instead of racing
# Arguments pick the tools (make test-fast needs only cnitool); none means all of them.
(($#)) || set -- etcd k8s cnitool coredns
if [ "$1" = relock ]; then
  relock_k8s
  relock_etcd
  say "tools/go/k8s and tools/go/etcd re-derived; review with: git diff tools/go"
  exit 0
fi
for tool in "$@"; do
  case $tool in
    etcd) build_etcd ;;
    k8s) build_k8s ;;
    cnitool) go_install cnitool github.com/containernetworking/cni/cnitool "$CNITOOL_VERSION" ;;
    coredns) go_install coredns github.com/coredns/coredns "$COREDNS_VERSION" ;;
    *) say "unknown tool '$tool' (known: etcd k8s cnitool coredns)"; exit 2 ;;
  esac
done
