# bond-injector: the two newcomer commands are `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV  ?= .venv
PY    := $(VENV)/bin/python
CACHE ?= $(CURDIR)/.cache
export BOND_INJECTOR_CACHE := $(CACHE)
export PATH := $(CACHE)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# uv, pinned with hashes in requirements/uv.txt, in a venv of its own (uv sync keeps .venv exact).
UV_HOME := $(CACHE)/uv-$(word 1,$(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/uv.txt))
export UV := $(UV_HOME)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON := python3
export UV_PYTHON_DOWNLOADS := never

$(UV): requirements/uv.txt
	rm -rf $(UV_HOME) && python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q --require-hashes --no-deps -r requirements/uv.txt
	touch $@

$(VENV)/.stamp: pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --extra dev
	touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## create .venv with exactly uv.lock: the package and its dev tools

.PHONY: lock
lock: $(UV) ## re-resolve uv.lock (and requirements/) to the newest versions allowed; re-derive tools/go/{k8s,etcd}
	tools/lock.sh update
	tools/build-go-tools.sh relock

.PHONY: test-latest
test-latest: deps-fast build ## the fast tier on the newest allowed dependencies, in a throwaway venv (not in make test)
	tools/test-latest.sh

.PHONY: deps-fast
deps-fast: venv ## what the fast tier needs: system packages, kubectl and helm, cnitool (idempotent)
	tools/ensure-apt.sh
	tools/get-kubectl-helm.sh
	tools/build-go-tools.sh cnitool

.PHONY: deps
deps: deps-fast ## deps-fast plus the Go-built control plane and kubelet (idempotent; cold: ~20 min)
	tools/build-go-tools.sh
	tools/ensure-apt.sh $(IMAGES_APT) docker-registry  # the images tier pushes to a real one

.PHONY: lint
lint: venv ## the lock in step, ruff, mypy --strict and the import contracts
	tools/lock.sh check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy webhook cni certs tests bench tools/images.py
	$(VENV)/bin/lint-imports

.PHONY: build
build: venv ## the self-contained CNI executable bin/bond
	./build.sh

.PHONY: test
test: deps node-deps images lint build ## the whole suite: lint, fast, kernel (one VM), cluster, images and node (one VM) tiers
	$(PY) -m pytest tests

.PHONY: test-fast
test-fast: deps-fast build ## only the unmarked tier (pure and local-process tests)
	$(PY) -m pytest tests -m 'not kernel and not cluster and not node and not images'

.PHONY: test-kernel
test-kernel: deps build ## only the kernel tier, inside one VM
	$(PY) -m pytest tests -m kernel

.PHONY: test-cluster
test-cluster: deps build ## only the cluster tier, against the local control plane
	$(PY) -m pytest tests -m cluster

.PHONY: test-node
test-node: deps node-deps images build ## only the node tier: a real node in the VM, the chart installed
	$(PY) -m pytest tests -m node

.PHONY: cluster-up
cluster-up: deps ## start etcd, kube-apiserver, controller-manager, scheduler; kubeconfig in .cluster/kubeconfig
	$(PY) -m tests.rigs.cluster up

.PHONY: cluster-down
cluster-down: venv ## stop the local control plane and remove its state
	$(PY) -m tests.rigs.cluster down

.PHONY: dev-up
dev-up: deps build ## cluster + certs + local webhook + the chart installed as release bond-injector
	$(PY) -m tests.rigs.dev up

.PHONY: dev-down
dev-down: venv ## undo dev-up
	$(PY) -m tests.rigs.dev down

.PHONY: node-deps
node-deps: deps ## the node rig's parts: Multus from ../shared/peers, the SR-IOV stand-ins, apt packages
	tools/ensure-apt.sh $(NODE_APT)
	tools/build-node-parts.sh

.PHONY: node-up
node-up: deps node-deps images ## one real node in the VM (kubelet, containerd, Multus); kubeconfig .cluster/kubeconfig
	$(PY) -m tests.rigs.node up

.PHONY: node-down
node-down: venv ## stop the node rig and remove its state
	$(PY) -m tests.rigs.node down

.PHONY: demo
demo: deps build ## the main job end to end on this machine
	tools/demo.sh

.PHONY: demo-node
demo-node: deps node-deps images build ## the seed guide on a real node (kubelet, containerd, Multus) in a VM
	tools/demo-node.sh

# The node rig (tests/rigs/node.py): the runtime, kube-proxy's tools, and the two forwarders
# between the host's control plane and the VM (socat out of the guest, tinyproxy into it).
NODE_APT := containerd runc iptables conntrack socat tinyproxy

# The image build: buildah (no daemon; vfs storage, chroot isolation), mmdebstrap for the bases,
# gcc and libc6-dev for the static pause binary, binutils (readelf) for its test.
IMAGES_APT := buildah mmdebstrap gcc libc6-dev binutils git
REGISTRY ?=
PUSH ?=
TLS_VERIFY ?= true

.PHONY: images
images: ## build the images (OCI archives in .cache/images); REGISTRY=... PUSH=1 pushes them
	tools/ensure-apt.sh $(IMAGES_APT)
	python3 tools/images.py --cache $(CACHE) --tls-verify $(TLS_VERIFY) \
	  $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(filter 1 yes true,$(PUSH)),--push)

.PHONY: bench
bench: deps build ## benchmarks against the real peers (built from ../shared/peers), as ratios
	$(PY) -m bench

.PHONY: soak
soak: deps ## our webhook under a 60 s soak: mixed reviews, slow clients, NAD burst, cert rotation
	$(PY) -m bench.soak --seconds 60

.PHONY: clean
clean: ## remove build outputs (keeps .cache)
	rm -rf build dist bin .pytest_cache .mypy_cache .ruff_cache
