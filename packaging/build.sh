#!/usr/bin/env bash
# npm run package: builds the .deb (dpkg-deb) and the .rpm (rpmbuild, Debian's `rpm` package)
# from this checkout into build/packages/ (or the directory given). Both carry the compiled
# daemon and client with their production dependencies (nothing is fetched at install time),
# the unit, the service user (sysusers.d), /etc/vdsm-agentd/config.json as a config file, a
# sysctl.d drop-in reserving the port, man pages made from the option table, and LICENSE.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build/packages}"
for tool in dpkg-deb rpmbuild gzip npm; do
  command -v "$tool" >/dev/null || { echo "package: error: $tool is missing (apt-get install dpkg-dev rpm gzip; see scripts/setup-test-host.sh)" >&2; exit 2; }
done
VERSION="$(node -p "require('$ROOT/package.json').version")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vdsm-agentd-package-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

cd "$ROOT"
# Compiled into the work directory, not dist/: tests running meanwhile use the checkout's dist/.
npx tsc -p tsconfig.json --incremental false --outDir "$WORK/dist"
# dist/main.js as one file with its start-path dependencies (scripts/bundle-daemon.mjs says why).
node scripts/bundle-daemon.mjs "$WORK/dist"

# The tree both packages share.
COMMON="$WORK/common"
LIB="$COMMON/usr/lib/vdsm-agentd"
mkdir -p "$LIB/bin" "$COMMON/usr/bin" "$COMMON/usr/lib/systemd/system" "$COMMON/usr/lib/sysctl.d" \
  "$COMMON/usr/lib/sysusers.d" "$COMMON/etc/vdsm-agentd" "$COMMON/usr/share/man/man8" "$COMMON/usr/share/man/man1" \
  "$COMMON/usr/share/doc/vdsm-agentd"
cp -a "$WORK/dist" package.json package-lock.json LICENSE "$LIB/"
# The demo and its simulator are for a checkout, not a host.
rm -rf "$LIB/dist/demo.js" "$LIB/dist/demo.d.ts" "$LIB/dist/sim"
find "$LIB/dist" \( -name '*.map' -o -name '*.d.ts' \) -delete
# Exactly the locked production dependencies, from npm's cache when it has them.
(cd "$LIB" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null)
# netlink's prebuilt addon for this architecture only (the package is amd64/x86_64).
find "$LIB/node_modules" -type d -name prebuilds -prune -exec sh -c 'for d in "$1"/*; do [ "$(basename "$d")" = linux-x64 ] || rm -rf "$d"; done' _ {} \;
# The man pages, once the staged client can run (its --help is the client's page).
mkdir -p "$WORK/man"
npx tsx packaging/man.ts "$WORK/man" "$LIB/dist"
install -m 0755 packaging/files/launcher.sh "$LIB/bin/vdsm-agentd"
install -m 0755 packaging/files/launcher.sh "$LIB/bin/vdsm-agent-client"
ln -s ../lib/vdsm-agentd/bin/vdsm-agentd "$COMMON/usr/bin/vdsm-agentd"
ln -s ../lib/vdsm-agentd/bin/vdsm-agent-client "$COMMON/usr/bin/vdsm-agent-client"
install -m 0644 systemd/vdsm-agentd.service "$COMMON/usr/lib/systemd/system/"
install -m 0644 packaging/files/sysctl.conf "$COMMON/usr/lib/sysctl.d/zz-vdsm-agentd.conf"
install -m 0644 packaging/files/config.json "$COMMON/etc/vdsm-agentd/config.json"
gzip -9n -c "$WORK/man/vdsm-agentd.8" > "$COMMON/usr/share/man/man8/vdsm-agentd.8.gz"
gzip -9n -c "$WORK/man/vdsm-agent-client.1" > "$COMMON/usr/share/man/man1/vdsm-agent-client.1.gz"
install -m 0644 README.md "$COMMON/usr/share/doc/vdsm-agentd/README.md"
chmod -R u=rwX,go=rX "$COMMON"

# .deb
DEB="$WORK/deb"
cp -a "$COMMON" "$DEB"
install -m 0644 packaging/files/sysusers-deb.conf "$DEB/usr/lib/sysusers.d/vdsm-agentd.conf"
{ printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: vdsm-agentd\n\nFiles: *\nLicense: Apache-2.0\n On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0\n and in /usr/lib/vdsm-agentd/LICENSE.\n'; } > "$DEB/usr/share/doc/vdsm-agentd/copyright"
mkdir -p "$DEB/DEBIAN"
sysusers_deb="$(grep -v '^#' packaging/files/sysusers-deb.conf)"
for s in preinst postinst prerm postrm; do
  awk -v body="$sysusers_deb" '{ if ($0 == "@SYSUSERS@") print body; else print }' "packaging/deb/$s" > "$DEB/DEBIAN/$s"
  chmod 0755 "$DEB/DEBIAN/$s"
done
echo /etc/vdsm-agentd/config.json > "$DEB/DEBIAN/conffiles"
(cd "$DEB" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$WORK/md5sums"
mv "$WORK/md5sums" "$DEB/DEBIAN/md5sums"
cat > "$DEB/DEBIAN/control" <<CONTROL
Package: vdsm-agentd
Version: $VERSION-1
Architecture: amd64
Maintainer: vdsm-agentd developers <root@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$DEB" | cut -f1)
Depends: nodejs (>= 20), systemd
Section: admin
Priority: optional
Description: VDSM's JSON-RPC verbs over WebSocket for a hypervisor host
 A host daemon, one per hypervisor host: it reads the guest agents (oVirt
 guest agent, qemu-ga) over the VMs' virtio-serial channel sockets and
 answers VDSM's Host.getAllVmStats, VM.getStats and Host.getRoute verbs as
 JSON-RPC 2.0 over WebSocket and STOMP 1.2. With vdsm-agent-client.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$DEB" "$OUT/vdsm-agentd_${VERSION}-1_amd64.deb" >/dev/null

# .rpm
RPMSTAGE="$WORK/rpmstage"
cp -a "$COMMON" "$RPMSTAGE"
install -m 0644 packaging/files/sysusers-rpm.conf "$RPMSTAGE/usr/lib/sysusers.d/vdsm-agentd.conf"
install -D -m 0644 LICENSE "$RPMSTAGE/usr/share/licenses/vdsm-agentd/LICENSE"
sysusers_rpm="$(grep -v '^#' packaging/files/sysusers-rpm.conf)"
awk -v body="$sysusers_rpm" -v stage="$RPMSTAGE" -v version="$VERSION" \
  '{ gsub("@STAGE@", stage); gsub("@VERSION@", version); if ($0 == "@SYSUSERS@") print body; else print }' \
  packaging/rpm/vdsm-agentd.spec.in > "$WORK/vdsm-agentd.spec"
rpmbuild --quiet -bb --target x86_64 --define "_topdir $WORK/rpmbuild" --define "_rpmdir $OUT" \
  --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' "$WORK/vdsm-agentd.spec" >/dev/null

ls -l "$OUT/vdsm-agentd_${VERSION}-1_amd64.deb" "$OUT/vdsm-agentd-${VERSION}-1.x86_64.rpm" | awk '{ print $5, $NF }'
