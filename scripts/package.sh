#!/usr/bin/env bash
# Builds the Debian package from a release build: target/pkg/proxyd_VERSION_ARCH.deb
# (under $CARGO_TARGET_DIR when set). Prints the package's path.
# dpkg-deb (Debian package dpkg) assembles it from a staged tree; see packaging/README.md.
#
#   scripts/package.sh                 version from Cargo.toml
#   PKG_VERSION=0.1.0-2 scripts/package.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=${PKG_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
ARCH=$(dpkg --print-architecture)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$TARGET/pkg"
STAGE="$OUT/stage-deb"

cargo build --release --quiet --bin proxyd --bin proxyctl
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$OUT"

# Binaries, stripped (the release profile keeps line tables for profiling).
for b in proxyd proxyctl; do
    install -D -m 0755 "$TARGET/release/$b" "$STAGE/usr/sbin/$b"
    strip --strip-unneeded "$STAGE/usr/sbin/$b"
done
# Configuration: conffiles, so an upgrade keeps local edits.
install -D -m 0644 packaging/proxyd.toml "$STAGE/etc/proxyd/proxyd.toml"
install -d -m 0755 "$STAGE/etc/proxyd/conf.d"
install -D -m 0644 packaging/logrotate "$STAGE/etc/logrotate.d/proxyd"
install -D -m 0644 packaging/systemd/proxyd.service "$STAGE/lib/systemd/system/proxyd.service"
# Manual pages, compressed as Debian policy wants.
for page in proxyd.8 proxyctl.8 proxyd.toml.5; do
    section=${page##*.}
    install -D -m 0644 "man/$page" "$STAGE/usr/share/man/man$section/$page"
    gzip -9n "$STAGE/usr/share/man/man$section/$page"
done
DOC="$STAGE/usr/share/doc/proxyd"
install -D -m 0644 README.md "$DOC/README.md"
install -D -m 0644 packaging/README.md "$DOC/README.packaging.md"
install -D -m 0644 packaging/examples/site.toml "$DOC/examples/site.toml"
install -D -m 0644 packaging/copyright "$DOC/copyright"
printf 'proxyd (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- proxyd developers <proxyd@example.org>  %s\n' \
    "$VERSION" "$VERSION" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    | gzip -9n > "$DOC/changelog.Debian.gz"
install -d -m 0750 "$STAGE/var/log/proxyd"

for s in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$s" "$STAGE/DEBIAN/$s"
done
printf '/etc/proxyd/proxyd.toml\n/etc/logrotate.d/proxyd\n' > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: proxyd
Version: $VERSION
Section: httpd
Priority: optional
Architecture: $ARCH
Maintainer: proxyd developers <proxyd@example.org>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), adduser
Recommends: logrotate
Provides: httpd
Description: reverse proxy and HTTP server
 proxyd is a reverse proxy and HTTP server in the NGINX process model: a
 privileged master validates the configuration, binds the sockets and forks
 workers, each an epoll event loop with its own upstream connection pools.
 Reloads are transactional and lose no request; systemd is told of every
 state change (Type=notify).
CONTROL

DEB="$OUT/proxyd_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
