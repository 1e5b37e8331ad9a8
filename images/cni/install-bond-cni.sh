#!/bin/sh
# Installs the bond CNI plugin into the node's CNI binary directory without ever exposing a
# half-written file: the container runtime may exec the plugin at any moment.
#
#   SOURCE  the plugin in the image: a single executable, or a one-dir bundle (a directory
#           holding an executable of the same name and its libraries)
#   DEST    the host's CNI bin directory, mounted into the container
#
# A file is copied to a temporary name in DEST, then renamed over DEST/bond (rename is atomic on
# one filesystem). A bundle is copied to a temporary directory, renamed to DEST/.bond-<digest>,
# and DEST/bond becomes a relative symlink to its executable, swapped in by one rename. An
# existing DEST/.bond-<digest> is used only if its content has that digest; else it is replaced.
# After installing, it sleeps (a DaemonSet pod must keep running); INSTALL_ONLY=1 exits instead.
set -eu

SOURCE="${BOND_CNI_SOURCE:-/opt/bond-injector/bond}"
DEST="${CNI_BIN_DIR:-/host/opt/cni/bin}"
NAME="${CNI_PLUGIN_NAME:-bond}"

log() { echo "install-bond-cni: $*" >&2; }

[ -e "$SOURCE" ] || { log "no plugin at $SOURCE"; exit 1; }
[ -d "$DEST" ] || { log "$DEST is not a directory: mount the host's CNI bin directory there"; exit 1; }

digest() {
  # A content digest of the file or bundle: every file's bytes and every symlink's target, by
  # path, so an unchanged plugin is not reinstalled and a changed or added one is noticed.
  if [ -d "$1" ]; then
    (
      cd "$1" &&
        { find . -type f -exec sha256sum {} + &&
          find . -type l -exec sh -c 'for l; do printf "link %s %s\n" "$l" "$(readlink "$l")"; done' _ {} +; } |
        LC_ALL=C sort
    ) | sha256sum | cut -c1-16
  else
    sha256sum "$1" | cut -c1-16
  fi
}

want="$(digest "$SOURCE")"
tmp="$DEST/.$NAME.tmp.$$"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

if [ -d "$SOURCE" ]; then
  [ -x "$SOURCE/$NAME" ] || { log "bundle $SOURCE has no executable $NAME"; exit 1; }
  bundle=".$NAME-$want"
  # A folder of that name is trusted only when its content has that digest: anything that can
  # write the CNI bin folder could have planted or changed one under the name.
  if [ -d "$DEST/$bundle" ] && [ "$(digest "$DEST/$bundle")" != "$want" ]; then
    log "$DEST/$bundle does not hold bundle $want: replacing it"
    rm -rf "$tmp"
    cp -R "$SOURCE" "$tmp"
    mv "$DEST/$bundle" "$DEST/$bundle.bad.$$"
    mv "$tmp" "$DEST/$bundle"
    rm -rf "$DEST/$bundle.bad.$$"
  fi
  if [ "$(readlink "$DEST/$NAME" 2>/dev/null || true)" = "$bundle/$NAME" ] && [ -x "$DEST/$bundle/$NAME" ]; then
    log "$DEST/$NAME is already bundle $want"
  else
    previous="$(readlink "$DEST/$NAME" 2>/dev/null | cut -d/ -f1 || true)"
    if [ ! -d "$DEST/$bundle" ]; then
      rm -rf "$tmp"
      cp -R "$SOURCE" "$tmp"
      mv "$tmp" "$DEST/$bundle"
    fi
    ln -s "$bundle/$NAME" "$tmp"
    mv -f "$tmp" "$DEST/$NAME"
    log "installed bundle $want as $DEST/$NAME"
    # Keep the bundle just replaced (a plugin run may still be loading from it), drop older ones.
    for old in "$DEST"/."$NAME"-*; do
      [ -d "$old" ] || continue
      base="$(basename "$old")"
      [ "$base" = "$bundle" ] || [ "$base" = "$previous" ] || rm -rf "$old"
    done
  fi
else
  if [ -f "$DEST/$NAME" ] && [ ! -L "$DEST/$NAME" ] && [ "$(digest "$DEST/$NAME")" = "$want" ]; then
    log "$DEST/$NAME is already $want"
  else
    cp "$SOURCE" "$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$DEST/$NAME"
    log "installed $want as $DEST/$NAME"
  fi
fi

[ "${INSTALL_ONLY:-0}" = 1 ] && exit 0
trap - EXIT
# Sleep until the pod is stopped; `exec sleep` so SIGTERM ends it at once.
exec sleep infinity
