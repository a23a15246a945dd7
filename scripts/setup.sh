#!/usr/bin/env bash
# scripts/setup.sh - everything chassis needs on a Debian 12 host with a rustup toolchain.
#
# Idempotent and quiet: safe to run before every `make`; prints only when it does something.
#   1. apt package lists (apt-get update only when none are present, or once when a
#      download fails because the lists are stale)
#   2. host packages the build and tests need (small ones only)
#   3. rustup target x86_64-unknown-none and the rustfmt component
#   4. Debian artifacts, downloaded with `apt-get download` and unpacked with `dpkg -x`
#      into cache/x/<package>/ (cache/ is git-ignored; nothing here is ever committed):
#      seabios, ipxe-qemu, the linux-image-*-amd64 that linux-image-amd64 depends on,
#      busybox-static
#   5. cache/initramfs.cpio.gz, a busybox test initramfs (see make_initramfs below)
#   6. cache/paths.env: KERNEL, INITRD, SEABIOS, SEABIOS_DIR, IPXE_DIR (absolute paths),
#      and cache/vmlinuz, a link to the current kernel
#
# Environment: CHASSIS_CACHE (default <repo>/cache), SETUP_VERBOSE=1 to narrate.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CHASSIS_CACHE:-$ROOT/cache}
VERBOSE=${SETUP_VERBOSE:-0}

say() { echo "setup: $*" >&2; }
note() { if [ "$VERBOSE" = 1 ]; then say "$@"; fi; }
die() { say "ERROR: $*"; exit 1; }

# Run a command quietly; on failure show its output and return its status.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then sed 's/^/    /' "$log" >&2; fi
  rm -f "$log"
  return "$rc"
}

# Root for apt-get install/update: ourselves, or sudo.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else SUDO=(false); fi
fi
as_root() {
  if [ "${SUDO[0]:-}" = false ]; then
    die "need root (or sudo) to run: $*"
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@"
}

# ---- 1. package lists -----------------------------------------------------------------------
APT_UPDATED=0
apt_update() {
  say "apt-get update"
  quiet as_root apt-get update -qq || die "apt-get update failed"
  APT_UPDATED=1
}
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  apt_update
fi

# ---- 2. host packages -----------------------------------------------------------------------
# command:package. cc links the host binaries (normally present wherever rustup works).
need=()
for pair in cpio:cpio gzip:gzip cc:gcc dpkg-deb:dpkg apt-get:apt; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  if ! quiet as_root apt-get install -y -qq --no-install-recommends "${need[@]}"; then
    [ "$APT_UPDATED" = 1 ] && die "apt-get install ${need[*]} failed"
    apt_update
    quiet as_root apt-get install -y -qq --no-install-recommends "${need[@]}" \
      || die "apt-get install ${need[*]} failed"
  fi
fi

# ---- 3. Rust targets and components -----------------------------------------------------------
command -v rustup >/dev/null 2>&1 || die "rustup not found: install a rustup toolchain first (https://rustup.rs)"
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
  say "rustup target add x86_64-unknown-none"
  quiet rustup target add x86_64-unknown-none || die "rustup target add failed"
fi
if ! cargo fmt --version >/dev/null 2>&1; then
  say "rustup component add rustfmt"
  quiet rustup component add rustfmt || die "rustup component add rustfmt failed"
fi

# ---- 4. Debian artifacts (never installed, only unpacked) -----------------------------------
mkdir -p "$CACHE/debs" "$CACHE/x"

# apt-get download into an empty temp dir, then dpkg -x into x/<pkg>; x/<pkg>/.done stamps it.
# The .deb itself is not kept.
fetch() {
  local pkg=$1 tmp deb
  [ -e "$CACHE/x/$pkg/.done" ] && return 0
  say "fetching Debian package $pkg"
  tmp=$(mktemp -d "$CACHE/debs/.dl.XXXXXX")
  # As root apt-get download warns about its _apt sandbox user; downloading as root is fine here.
  local sandbox=()
  [ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
  if ! (cd "$tmp" && quiet apt-get download "${sandbox[@]}" "$pkg"); then
    # Usually stale lists: the mirror no longer has that version. Refresh once and retry.
    [ "$APT_UPDATED" = 1 ] && { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    apt_update
    (cd "$tmp" && quiet apt-get download "${sandbox[@]}" "$pkg") \
      || { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
  fi
  deb=$(ls "$tmp"/*.deb)
  rm -rf "$CACHE/x/$pkg"
  dpkg -x "$deb" "$CACHE/x/$pkg" || { rm -rf "$tmp" "$CACHE/x/$pkg"; die "dpkg -x $deb failed"; }
  rm -rf "$tmp"
  # Only /boot/vmlinuz-* of a kernel package is used: drop its ~400 MB of modules.
  case $pkg in linux-image-*) rm -rf "$CACHE/x/$pkg/lib" "$CACHE/x/$pkg/usr" ;; esac
  touch "$CACHE/x/$pkg/.done"
}

kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
KPKG=$(kernel_pkg)
if [ -z "$KPKG" ] && [ "$APT_UPDATED" = 0 ]; then
  apt_update
  KPKG=$(kernel_pkg)
fi
[ -n "$KPKG" ] || die "cannot tell which linux-image-*-amd64 linux-image-amd64 depends on"

for p in seabios ipxe-qemu busybox-static "$KPKG"; do
  fetch "$p"
done

SEABIOS_DIR=$CACHE/x/seabios/usr/share/seabios
SEABIOS=$SEABIOS_DIR/bios-256k.bin
IPXE_DIR=$CACHE/x/ipxe-qemu/usr/lib/ipxe/qemu
BUSYBOX=$CACHE/x/busybox-static/bin/busybox
KERNEL=$(ls "$CACHE/x/$KPKG"/boot/vmlinuz-* 2>/dev/null | head -1 || true)
[ -f "$SEABIOS" ] || die "bios-256k.bin missing from the seabios package ($SEABIOS)"
compgen -G "$SEABIOS_DIR/vgabios-*.bin" >/dev/null || die "no vgabios-*.bin in $SEABIOS_DIR"
[ -d "$IPXE_DIR" ] || die "ipxe-qemu ROMs missing ($IPXE_DIR)"
[ -x "$BUSYBOX" ] || die "busybox missing from busybox-static ($BUSYBOX)"
[ -n "$KERNEL" ] && [ -f "$KERNEL" ] || die "no vmlinuz in $KPKG"
# A stable name for configs (examples/linux.cfg): cache/vmlinuz -> the current kernel.
if [ "$(readlink "$CACHE/vmlinuz" 2>/dev/null || true)" != "${KERNEL#"$CACHE"/}" ]; then
  ln -sfn "${KERNEL#"$CACHE"/}" "$CACHE/vmlinuz"
fi

# ---- 5. the test initramfs --------------------------------------------------------------------
# /init: busybox sh. Device nodes are not packed (cpio runs unprivileged): devtmpfs provides
# them. Output lines the tests parse:
#   CHASSIS-MARKER: init reached
#   PCI-BEGIN
#   PCI <bus:dev.fn> <vendor>:<device>      (hex, no 0x; e.g. PCI 00:01.3 8086:7113)
#   PCI-END
INITRD=$CACHE/initramfs.cpio.gz
init_script() {
  cat <<'EOF'
#!/bin/busybox sh
# chassis test initramfs init (generated by scripts/setup.sh)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "CHASSIS-MARKER: init reached"
echo "PCI-BEGIN"
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/vendor" ] || continue
  bdf=${d##*/}
  v=$(cat "$d/vendor"); dv=$(cat "$d/device")
  echo "PCI ${bdf#*:} ${v#0x}:${dv#0x}"
done
echo "PCI-END"
poweroff -f
EOF
}
# Rebuild when the init script or the busybox binary changed (hash stamp).
want=$( { init_script; sha256sum <"$BUSYBOX"; } | sha256sum | cut -d' ' -f1)
have=$(cat "$CACHE/initramfs.stamp" 2>/dev/null || true)
if [ ! -f "$INITRD" ] || [ "$want" != "$have" ]; then
  say "building $INITRD"
  stage=$CACHE/initramfs
  rm -rf "$stage"
  mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,usr/bin,usr/sbin}
  cp "$BUSYBOX" "$stage/bin/busybox"
  init_script >"$stage/init"
  chmod 0755 "$stage/init" "$stage/bin/busybox"
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
    | gzip -9n >"$INITRD.tmp"
  mv -f "$INITRD.tmp" "$INITRD"
  echo "$want" >"$CACHE/initramfs.stamp"
fi

# ---- 6. paths for the Makefile and the tests ---------------------------------------------------
env_new=$(cat <<EOF
# generated by scripts/setup.sh; do not edit
KERNEL=$KERNEL
INITRD=$INITRD
SEABIOS=$SEABIOS
SEABIOS_DIR=$SEABIOS_DIR
IPXE_DIR=$IPXE_DIR
EOF
)
if [ "$(cat "$CACHE/paths.env" 2>/dev/null || true)" != "$env_new" ]; then
  note "writing $CACHE/paths.env"
  printf '%s\n' "$env_new" >"$CACHE/paths.env"
fi
note "ready: $CACHE/paths.env"
