#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests use besides Rust when it is
# missing (Debian packages with apt-get when run as root, Python modules with pip), then runs
# every test binary to the end, whatever fails. With PROXYD_SYSTEM_TESTS=1 (as root) it also
# runs the tests that install the deb on this machine.
#
#   scripts/test.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."

# command:package for each tool a test runs.
tools="systemd-analyze:systemd groff:groff-base logrotate:logrotate dpkg-deb:dpkg rpmbuild:rpm
strip:binutils adduser:adduser lintian:lintian rpmlint:rpmlint openssl:openssl curl:curl
chromium:chromium python3:python3"
missing=()
for t in $tools; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t##*:}")
done
# Upstream `tls = true` verifies against the system's roots.
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "scripts/test.sh: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "scripts/test.sh: missing ${missing[*]}; their tests will fail: sudo apt-get install -y ${missing[*]}" >&2
    fi
fi
# promtool lints /metrics where it is installed (the tests skip that check without it). Its
# package is Prometheus itself: installed without recommends (no node exporter); where
# systemd runs, the package enables a prometheus.service of its own.
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing prometheus (for promtool)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
        echo "scripts/test.sh: cannot install prometheus; promtool checks are skipped" >&2
fi
# Python test clients: the WebSocket tunnel tests and Prometheus's own metrics parser.
for m in "websockets:websockets>=13" "prometheus_client:prometheus_client"; do
    if ! python3 -c "import ${m%%:*}" 2>/dev/null; then
        python3 -m pip install --quiet "${m#*:}" 2>/dev/null ||
            python3 -m pip install --quiet --break-system-packages "${m#*:}" ||
            echo "scripts/test.sh: cannot install ${m#*:} with pip; its tests will fail" >&2
    fi
done

status=0
cargo test --no-fail-fast "$@" || status=$?
if [ "${PROXYD_SYSTEM_TESTS:-}" = 1 ]; then
    cargo test --test package -- --ignored || status=$?
fi
exit $status
