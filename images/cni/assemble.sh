#!/bin/sh
# assemble.sh SRC ROOTFS: build the bond plugin bundle from SRC with ./build.sh in a clean venv
# and lay out the installer image's files under ROOTFS:
#   ROOTFS/opt/bond-injector/bond/              the bundle (bin/bond.d): `bond`, the static client
#                                               the runtime runs; `bond-plugin`, the PyInstaller
#                                               executable it falls back to (and `bond serve`,
#                                               `bond probe` run); `_internal/`, its libraries
#   ROOTFS/usr/local/bin/install-bond-cni       the DaemonSet's command
# Used by Dockerfile.cni and by tests/chart/test_images.py.
set -eu
src=$1 rootfs=$2
cd "$src"
# The runtime dependencies and PyInstaller exactly as locked (requirements/bundle.txt, from uv.lock).
sh images/install-locked.sh .venv . requirements/bundle.txt
./build.sh
mkdir -p "$rootfs/opt/bond-injector" "$rootfs/usr/local/bin"
rm -rf "$rootfs/opt/bond-injector/bond"
cp -a bin/bond.d "$rootfs/opt/bond-injector/bond"
cp images/cni/install-bond-cni.sh "$rootfs/usr/local/bin/install-bond-cni"
chmod 0755 "$rootfs/usr/local/bin/install-bond-cni"
