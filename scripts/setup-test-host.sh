#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (qemu-ga, iproute2, openssl,
# systemd-analyze, ...), only those missing. Needs root (apt-get). Safe to run again.
set -euo pipefail

PACKAGES=(
  iproute2          # ip netns / veth / routes for getRoute and qemu-ga namespaces
  openssl           # throwaway CAs for the mutual-TLS tests
  qemu-guest-agent  # the real qemu-ga, run inside network namespaces
  systemd           # systemd-analyze verify / security on the unit
  systemd-container # systemd-nspawn: the unit run by a real systemd in a throwaway container
  python3-stomp     # a STOMP client nobody here wrote, for the STOMP tests
  python3           # /usr/bin/python3: glibc inet_ntop, the reference for our IPv6 text (route tests)
  qemu-system-x86   # real guests under TCG for the VM tests (test/vm-*.test.ts)
  cpio              # packs the test guest's initramfs (scripts/build-test-guest.sh)
  libvirt-daemon    # libvirtd, started by the libvirt tests themselves (no systemd needed)
  libvirt-daemon-driver-qemu
  libvirt-clients   # virsh, the reference the libvirt tests compare against
  prometheus        # promtool check metrics: the daemon's /metrics output (test/metrics.test.ts)
  rpm               # rpmbuild for `npm run package`, rpm to check the .rpm (test/packaging.test.ts)
  man-db            # man, to read the packaged man pages back (test/packaging.test.ts)
  procps            # ps -o etimes (a QEMU process's age, elapsedTime's reference), pgrep in benches
)
# Not installed but fetched with apt-get download into the guest image cache, so no kernel lands
# in the host's /boot: linux-image-cloud-amd64 (its kernel and virtio modules) and busybox-static.

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-test-host: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup-test-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup-test-host: all test packages present"
# Fetch and build the VM tests' guest now (cached; a no-op when nothing changed).
bash "$(dirname "$0")/build-test-guest.sh" >/dev/null
