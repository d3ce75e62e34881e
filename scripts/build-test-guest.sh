#!/usr/bin/env bash
# Builds the tiny bootable guest the VM tests boot under QEMU: Debian's cloud kernel, an initramfs
# with busybox-static, the kernel's virtio modules, the host's real qemu-ga (with the libraries ldd
# lists) and fixtures/guest/init. Nothing binary lives in the repository: the kernel and busybox
# .debs are fetched with apt-get download (nothing is installed on the host), the rest is copied
# from the installed qemu-guest-agent package.
#
# The result is cached under a key hashed from every input (package versions, qemu-ga and its
# libraries, the init script, this script), so it is rebuilt only when one of them changes; a
# lock makes concurrent callers (parallel test files) wait for one build.
#
# Usage: scripts/build-test-guest.sh [--print-key]
# Prints the directory holding vmlinuz and initrd.img on its last line of stdout.
# Cache: $VDSM_TEST_GUEST_CACHE or /var/tmp/vdsm-agentd-test-guest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
init="$here/../fixtures/guest/init"
cache="${VDSM_TEST_GUEST_CACHE:-/var/tmp/vdsm-agentd-test-guest}"
qga="$(command -v qemu-ga || echo /usr/sbin/qemu-ga)"
# Loaded by the init in this order; each needs only those before it.
modules=(failover net_failover virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console virtio_net)

die() { echo "build-test-guest: $*" >&2; exit 1; }
log() { echo "build-test-guest: $*" >&2; }

[ -x "$qga" ] || die "qemu-ga not found (install qemu-guest-agent: scripts/setup-test-host.sh)"
for tool in apt-get apt-cache dpkg-deb cpio ldd sha256sum flock; do
  command -v "$tool" >/dev/null || die "the command '$tool' is missing (scripts/setup-test-host.sh installs it)"
done

mkdir -p "$cache/debs"
exec 9>"$cache/.lock"
flock 9

# One apt-cache call (each costs ~0.7 s): the kernel package the cloud metapackage points to, with
# its version, and busybox-static's candidate version.
resolve() {
  apt-cache show --no-all-versions linux-image-cloud-amd64 busybox-static 2>/dev/null | awk '
    /^Package:/ { p = $2 }
    p == "linux-image-cloud-amd64" && /^Depends:/ { match($0, /linux-image-[^ ,]+ \(= [^)]+\)/); split(substr($0, RSTART, RLENGTH), d, /[ ()=]+/); k = d[1] " " d[2] }
    p == "busybox-static" && /^Version:/ { b = $2 }
    END { if (k != "" && b != "") print k, b }'
}
resolved="$(resolve || true)"
if [ -z "$resolved" ]; then
  log "package lists do not know the cloud kernel or busybox-static yet: apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  resolved="$(resolve)"
fi
read -r kpkg kver bver <<<"$resolved"
[ -n "${bver:-}" ] || die "cannot resolve linux-image-cloud-amd64 and busybox-static in the package lists"

# Libraries qemu-ga loads, as ldd resolves them (the dynamic loader included).
mapfile -t libs < <(ldd "$qga" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)

key="$(
  {
    echo "$kpkg $kver busybox-static $bver ${modules[*]}"
    sha256sum "$0" "$init" "$qga" "${libs[@]}" | awk '{ print $1 }'
  } | sha256sum | cut -c1-16
)"
out="$cache/$key"
if [ "${1:-}" = "--print-key" ]; then echo "$key"; exit 0; fi
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  echo "$out"
  exit 0
fi

log "building $out ($kpkg $kver, busybox-static $bver, $("$qga" -V 2>&1 | head -1))"
work="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fetch() { # package version -> path of the .deb in the cache
  local deb
  deb="$(ls "$cache/debs/$1"_*"${2#*:}"_amd64.deb 2>/dev/null | head -1 || true)"
  if [ -z "$deb" ]; then
    (cd "$work" && apt-get download -q "$1=$2" >&2 2>/dev/null) || (cd "$work" && apt-get download "$1=$2" >&2) || die "apt-get download $1=$2 failed"
    mv "$work/$1"_*.deb "$cache/debs/"
    deb="$(ls "$cache/debs/$1"_*"${2#*:}"_amd64.deb | head -1)"
  fi
  echo "$deb"
}
kdeb="$(fetch "$kpkg" "$kver")"
bdeb="$(fetch busybox-static "$bver")"

dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"

root="$work/root"
mkdir -p "$root/bin" "$root/lib/modules" "$root/usr/sbin" "$root/etc"
install -m 0755 "$init" "$root/init"
install -m 0755 "$work/busybox/bin/busybox" "$root/bin/busybox"
for m in "${modules[@]}"; do
  ko="$(find "$work/kernel/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)"
  [ -n "$ko" ] || die "module $m not found in $kpkg"
  case "$ko" in
    *.xz) xz -dc "$ko" > "$root/lib/modules/$m.ko" ;;
    *) cp "$ko" "$root/lib/modules/$m.ko" ;;
  esac
done
install -m 0755 "$qga" "$root/usr/sbin/qemu-ga"
for lib in "${libs[@]}"; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# qemu-ga's guest-get-osinfo reads this.
cat > "$root/etc/os-release" <<'EOF'
PRETTY_NAME="vdsm-agentd test guest"
NAME="vdsm-agentd test guest"
ID=vdsm-test-guest
VERSION_ID="1"
EOF

cp "$(find "$work/kernel/boot" -name 'vmlinuz-*' | head -1)" "$work/vmlinuz"
# Uncompressed: gzip made no measurable difference to boot time under TCG, and this is simpler.
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner 0:0) > "$work/initrd.img"
{
  echo "kernel $kpkg $kver"
  echo "busybox-static $bver"
  echo "qemu-ga $("$qga" -V 2>&1 | head -1)"
} > "$work/manifest.txt"

mkdir -p "$out.new"
mv "$work/vmlinuz" "$work/initrd.img" "$work/manifest.txt" "$out.new/"
rm -rf "$out"
mv "$out.new" "$out"
# Older builds are dead weight once a new one exists; keep the downloaded .debs of this one only.
for d in "$cache"/*/; do
  case "${d%/}" in "$out" | "$cache/debs") ;; *) rm -rf "${d%/}" ;; esac
done
find "$cache/debs" -name '*.deb' ! -path "$kdeb" ! -path "$bdeb" -delete
log "built $out ($(du -sh "$out" | cut -f1))"
echo "$out"
