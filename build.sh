#!/usr/bin/env bash
# Build bin/bond: the bond CNI plugin as a self-contained one-dir bundle.
#
#   bin/bond.d/bond         the static C client the runtime execs (cni/helper/client/bond.c): it
#                           hands the call to the per-node helper, or runs bond-plugin when there
#                           is none
#   bin/bond.d/bond-plugin  a static launcher (tools/plugin-launcher.c) of bond-plugin.bin, the
#                           PyInstaller bootloader of the Python plugin (and `serve`, `probe`);
#                           the interpreter, the stdlib and deps in _internal/; the loader and the
#                           glibc libraries they were linked against in _glibc/
#   bin/bond                a symlink to bond.d/bond: install both side by side in the CNI bin dir,
#                           e.g. `cp -a bin/bond bin/bond.d /opt/cni/bin/`
#
# The bundle needs nothing from the node but the kernel (x86_64 Linux >= 3.2, glibc's floor).
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
# No cni.plugin.faults: its test-only kill points must not be a caller's to set in a shipped
# build (tests/cni/test_executable.py checks the bundle ignores them).
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --onedir --name bond-plugin \
    --paths . \
    --collect-submodules cni \
    --exclude-module tkinter --exclude-module pydoc \
    --exclude-module pkg_resources --exclude-module setuptools \
    --exclude-module pytest --exclude-module _pytest --exclude-module pyroute2 \
    --exclude-module cni.plugin.faults \
    --distpath "$work/dist" --workpath "$work/build" --specpath "$work" \
    "$work/bond.py"

# The client: static, so it starts in well under a millisecond and needs no loader.
${CC:-cc} -static -O2 -s -Wall -Wextra -Werror -o "$work/dist/bond-plugin/bond" cni/helper/client/bond.c

# glibc: the bootloader and libpython need the build host's glibc (libpython3.11 needs
# hypot@GLIBC_2.35; RHEL/RHCOS 8 has 2.28). So the bundle carries its own: the loader and every
# library its ELF files need from outside the bundle go into _glibc/; the PyInstaller executable
# becomes bond-plugin.bin, run by bond-plugin, a static launcher, through that loader with
# --library-path _glibc:_internal (tools/plugin-launcher.c). The node then provides only the kernel.
bundle="$work/dist/bond-plugin"
mv "$bundle/bond-plugin" "$bundle/bond-plugin.bin"
${CC:-cc} -static -O2 -s -Wall -Wextra -Werror -o "$bundle/bond-plugin" tools/plugin-launcher.c
mkdir "$bundle/_glibc"
# What the build host's loader resolves for each ELF file (ldd exits non-zero for a file that is
# not dynamic; "not found" is what matters, and stops the build).
deps=$(find "$bundle" -type f \( -name '*.so*' -o -name bond-plugin.bin \) -exec ldd {} + 2>/dev/null || true)
if grep -q 'not found' <<<"$deps"; then
    echo "build.sh: libraries the bundle needs are missing on this host:" >&2
    grep 'not found' <<<"$deps" | sort -u >&2
    exit 1
fi
needs=$(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3} $1 ~ /^\/.*ld-linux/ {print "ld-linux-x86-64.so.2", $1}' <<<"$deps" | sort -u)
# glibc dlopens libgcc_s for thread cancellation and unwinding: it travels too. (awk reads to the
# end: an early exit would SIGPIPE ldconfig and fail the pipe under pipefail.)
needs+=$'\n'"libgcc_s.so.1 $(ldconfig -p | awk '$1 == "libgcc_s.so.1" && /x86-64/ && !p {p = $NF} END {print p}')"
while read -r soname path; do
    [ -n "$soname" ] || continue
    case "$path" in "$bundle"/*) continue ;; esac
    [ -e "$bundle/_internal/$soname" ] && continue # found there through --library-path
    cp -L "$path" "$bundle/_glibc/$soname"
done <<<"$needs"
[ -x "$bundle/_glibc/ld-linux-x86-64.so.2" ] || { echo "build.sh: no loader found for the bundle" >&2; exit 1; }

mkdir -p bin
rm -rf bin/bond.d.new
mv "$work/dist/bond-plugin" bin/bond.d.new
# Replace the old bundle by rename, never in place: a runtime may be executing it right now.
if [ -d bin/bond.d ]; then mv bin/bond.d "$work/old"; fi
mv bin/bond.d.new bin/bond.d
ln -sfn bond.d/bond bin/bond.tmp && mv -T bin/bond.tmp bin/bond
echo "built bin/bond -> bin/bond.d/bond ($(du -sh bin/bond.d | cut -f1))"
