#!/bin/sh
# install-locked.sh VENV SRC REQUIREMENTS: a clean venv at VENV holding exactly REQUIREMENTS (made
# from uv.lock by `make lock`; pip checks every hash and resolves nothing) and the package from
# SRC, built by the pinned backend of SRC/requirements/build.txt in a throwaway venv, so nothing
# the image installs comes from an unpinned resolution. Used by images/webhook/install.sh and
# images/cni/assemble.sh.
set -eu
venv=$1 src=$2 reqs=$3
pip="--quiet --disable-pip-version-check --no-input"
backend=$(mktemp -d)
trap 'rm -rf "$backend"' EXIT
python3 -m venv "$backend/venv"
# shellcheck disable=SC2086 # $pip is words
"$backend/venv/bin/pip" install $pip --require-hashes --no-deps -r "$src/requirements/build.txt"
"$backend/venv/bin/pip" wheel $pip --no-deps --no-build-isolation -w "$backend/wheel" "$src"
python3 -m venv "$venv"
"$venv/bin/pip" install $pip --require-hashes --no-deps -r "$reqs"
"$venv/bin/pip" install $pip --no-deps "$backend"/wheel/*.whl
"$venv/bin/pip" check >/dev/null
