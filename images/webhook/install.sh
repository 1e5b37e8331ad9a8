#!/bin/sh
# install.sh SRC PREFIX: a clean venv at PREFIX holding the package from SRC and exactly the
# locked runtime dependencies (requirements/runtime.txt, from uv.lock; no dev extras). Used by
# Dockerfile.webhook and by tests/chart/test_images.py.
set -eu
src=$1 prefix=$2
sh "$src/images/install-locked.sh" "$prefix" "$src" "$src/requirements/runtime.txt"
"$prefix/bin/bond-injector" certs --help >/dev/null
