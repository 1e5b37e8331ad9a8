#!/usr/bin/env bash
# Build bin/bond: the bond CNI plugin as a self-contained one-dir bundle.
#
#   bin/bond.d/bond         the static C client the runtime execs (cni/helper/client/bond.c): it
#                           hands the call to the per-node helper, or runs bond-plugin when there
#                           is none
#   bin/bond.d/bond-plugin  the PyInstaller bootloader of the Python plugin (and `serve`, `probe`),
#                           the interpreter, the stdlib and deps in _internal/
#   bin/bond                a symlink to bond.d/bond: install both side by side in the CNI bin dir,
#                           e.g. `cp -a bin/bond bin/bond.d /opt/cni/bin/`
#
# The bundle needs nothing from the node but the kernel and libc.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d build/bond-cni.XXXXXX 2>/dev/null || { mkdir -p build && mktemp -d build/bond-cni.XXXXXX; })
trap 'rm -rf "$work"' EXIT

cat > "$work/bond.py" <<'PY'
import sys

from cni.cli import main

sys.exit(main())
PY

# No pkg_resources, whose runtime hook alone costs ~100 ms per start. The plugin speaks netlink
# itself (cni/kernel/rtnl.py): pyroute2 is the tests' oracle and must stay out of the bundle.
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --onedir --name bond-plugin \
    --paths . \
    --collect-submodules cni \
    --exclude-module tkinter --exclude-module pydoc \
    --exclude-module pkg_resources --exclude-module setuptools \
    --exclude-module pytest --exclude-module _pytest --exclude-module pyroute2 \
    --distpath "$work/dist" --workpath "$work/build" --specpath "$work" \
    "$work/bond.py"

# The client: static, so it starts in well under a millisecond and needs no loader.
${CC:-cc} -static -O2 -s -Wall -Wextra -Werror -o "$work/dist/bond-plugin/bond" cni/helper/client/bond.c

mkdir -p bin
rm -rf bin/bond.d.new
mv "$work/dist/bond-plugin" bin/bond.d.new
# Replace the old bundle by rename, never in place: a runtime may be executing it right now.
if [ -d bin/bond.d ]; then mv bin/bond.d "$work/old"; fi
mv bin/bond.d.new bin/bond.d
ln -sfn bond.d/bond bin/bond.tmp && mv -T bin/bond.tmp bin/bond
echo "built bin/bond -> bin/bond.d/bond ($(du -sh bin/bond.d | cut -f1))"
