#!/bin/sh
# install.sh SRC PREFIX: a clean venv at PREFIX holding the package from SRC and its runtime
# dependencies only (no dev extras). Used by Dockerfile.webhook and by tests/chart/test_images.py.
set -eu
src=$1 prefix=$2
python3 -m venv "$prefix"
"$prefix/bin/pip" install --quiet --disable-pip-version-check "$src"
"$prefix/bin/bond-injector" certs --help >/dev/null
