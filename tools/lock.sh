#!/usr/bin/env bash
# The Python lock: uv.lock (every runtime and dev dependency, with hashes) and what is made from it.
#
#   tools/lock.sh update   re-resolve to the newest versions pyproject.toml's ranges allow (make lock)
#   tools/lock.sh check    fail if uv.lock or a file below is out of step with pyproject.toml (lint)
#
# Made from uv.lock (uv export --frozen) for pip --require-hashes, which the images use:
#   requirements/runtime.txt   the package's runtime dependencies (Dockerfile.webhook)
#   requirements/bundle.txt    the runtime plus PyInstaller, the [bundle] extra (Dockerfile.cni)
# Compiled with hashes from their .in files (uv pip compile --universal):
#   requirements/build.txt     the build backend, for --no-build-isolation installs of the package
#   requirements/uv.txt        uv itself, which the Makefile bootstraps from it
# `make venv` installs exactly uv.lock with `uv sync --locked` (uv checks every hash).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:?set UV to the uv binary (the Makefile does)}
mode=${1:-check}
say() { echo "lock: $*" >&2; }

export_lock() { # export_lock <extras...>: the lock's requirements for pip, hashes included
  "$UV" export --frozen --no-dev --no-emit-project --no-header --format requirements-txt "$@"
}

compile_in() { # compile_in <name> [--upgrade]: requirements/<name>.in -> requirements/<name>.txt
  local name=$1
  shift
  "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes --no-header \
    "$@" "requirements/$name.in" -o "requirements/$name.txt"
}

case $mode in
  update)
    "$UV" lock --upgrade
    export_lock >requirements/runtime.txt
    export_lock --extra bundle >requirements/bundle.txt
    compile_in build --upgrade
    compile_in uv --upgrade
    say "updated; review with: git diff --stat uv.lock requirements/"
    ;;
  check)
    "$UV" lock --check || { say "uv.lock is out of step with pyproject.toml: run make lock"; exit 1; }
    stale=0
    for pair in "runtime.txt:" "bundle.txt:--extra bundle"; do
      file=requirements/${pair%%:*}
      # shellcheck disable=SC2086 # the extras are words
      if ! diff -u "$file" <(export_lock ${pair#*:}) >&2; then
        say "$file differs from uv.lock (diff above): run make lock"
        stale=1
      fi
    done
    exit $stale
    ;;
  *) say "usage: tools/lock.sh update|check"; exit 2 ;;
esac
