#!/usr/bin/env bash
# Builds the packages from a release build: target/pkg/proxyd_VERSION_ARCH.deb and
# target/pkg/proxyd-VERSION-1.ARCH.rpm (under $CARGO_TARGET_DIR when set); prints their paths.
# dpkg-deb (Debian package dpkg) and rpmbuild (Debian package rpm) assemble them from one
# staged tree; see packaging/README.md.
#
#   scripts/package.sh                       version from Cargo.toml, both formats
#   PKG_VERSION=0.1.0+2 scripts/package.sh
#   PKG_FORMATS=deb scripts/package.sh       only the deb
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=${PKG_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
FORMATS=${PKG_FORMATS:-deb rpm}
case " $FORMATS " in *" rpm "*)
    command -v rpmbuild >/dev/null || { echo "package.sh: rpmbuild not found (apt-get install rpm)" >&2; exit 2; } ;;
esac
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
    | gzip -9n > "$DOC/changelog.gz"

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
Depends: libc6 (>= 2.34), adduser, init-system-helpers (>= 1.54~)
Recommends: logrotate
Provides: httpd
Description: reverse proxy and HTTP server
 proxyd is a reverse proxy and HTTP server in the NGINX process model: a
 privileged master validates the configuration, binds the sockets and forks
 workers, each an epoll event loop with its own upstream connection pools.
 Reloads are transactional and lose no request; systemd is told of every
 state change (Type=notify).
CONTROL

if [[ " $FORMATS " == *" deb "* ]]; then
    DEB="$OUT/proxyd_${VERSION}_${ARCH}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
    echo "$DEB"
fi

if [[ " $FORMATS " == *" rpm "* ]]; then
    # The same tree, laid out the rpm way: units under /usr/lib, no Debian changelog.
    RSTAGE="$OUT/stage-rpm"
    rm -rf "$RSTAGE" "$OUT/rpmbuild"
    cp -a "$STAGE" "$RSTAGE"
    rm -rf "$RSTAGE/DEBIAN" "$RSTAGE/usr/share/doc/proxyd/changelog.gz"
    # rpm owns the log directory (the deb's postinst makes it).
    install -d -m 0750 "$RSTAGE/var/log/proxyd"
    mkdir -p "$RSTAGE/usr/lib"
    mv "$RSTAGE/lib/systemd" "$RSTAGE/usr/lib/systemd"
    rmdir "$RSTAGE/lib"
    RPM_VERSION=${VERSION//-/_}
    rpmbuild -bb --quiet \
        --define "_topdir $OUT/rpmbuild" \
        --define "pkg_version $RPM_VERSION" \
        --define "stage_dir $RSTAGE" \
        --define "_binary_payload w9.xzdio" \
        packaging/rpm/proxyd.spec >/dev/null
    RPM=$(find "$OUT/rpmbuild/RPMS" -name "proxyd-$RPM_VERSION-1.*.rpm" | head -1)
    mv "$RPM" "$OUT/"
    echo "$OUT/$(basename "$RPM")"
fi
