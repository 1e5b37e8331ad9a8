#!/usr/bin/env bash
# The fast tier on the newest versions pyproject.toml allows, in a throwaway venv: what a user who
# runs `pip install bond-injector` today gets. A break found here (as uvicorn 0.55's listener was)
# is fixed before `make lock` moves the lock onto it. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:?set UV to the uv binary (the Makefile does)}
CACHE=${BOND_INJECTOR_CACHE:-$PWD/.cache}
venv=$CACHE/latest-venv
rm -rf "$venv"
"$UV" venv --quiet --python python3 "$venv"
# Index metadata refreshed, the lock ignored: the highest versions the ranges allow.
"$UV" pip install --quiet --refresh --python "$venv/bin/python" -e '.[dev]'
echo "test-latest: newer than uv.lock:"
comm -13 <("$UV" export --frozen --extra dev --no-emit-project --no-hashes --no-header --no-annotate \
  --format requirements-txt | sed 's/ *;.*//' | tr 'A-Z_' 'a-z-' | sort) \
  <("$UV" pip freeze --python "$venv/bin/python" --exclude-editable | tr 'A-Z_' 'a-z-' | sort) |
  sed 's/^/  /' || true
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest tests \
  -m 'not kernel and not cluster and not node and not images' "$@"
