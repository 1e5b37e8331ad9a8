#!/usr/bin/env bash
# Installs the Debian packages the rigs need, only when one is missing (idempotent, quiet when done).
#   tools/ensure-apt.sh            the rigs' packages (below)
#   tools/ensure-apt.sh PKG...     only these (e.g. the image build's, from the Makefile)
set -euo pipefail
pkgs=(
  qemu-system-x86       # the kernel VM (TCG)
  linux-image-amd64     # Debian's stock kernel, which has the bonding module
  containernetworking-plugins  # real IPAM plugins: host-local, static
  busybox-static        # the chroot tests of the self-contained CNI executable
  mmdebstrap            # tests/bundle: a Debian bullseye root (glibc 2.31) for the bundle
  binutils              # build.sh (PyInstaller's objdump) and tests/bundle's readelf scan
  gcc libc6-dev         # build.sh: the static C client of the CNI helper and its launcher
  iproute2 iputils-ping ethtool kmod
  socat                 # make demo: qemu's guestfwd hands the VM's API connections to it
)
if (($#)); then pkgs=("$@"); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ensure-apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
