#!/usr/bin/env bash
# Runs every test of the workspace. What the tests need beyond the Rust toolchain is
# installed here, only when it is missing: schemathesis and prometheus_client (pinned in
# .ci/requirements.txt) go into a virtual environment under target/, since stock Debian and
# Ubuntu refuse a system-wide `pip install`; PostgreSQL's binaries come from Debian's
# `postgresql` unless WAM_TEST_POSTGRES names a server (the tests start their own throwaway
# cluster from the binaries, never the packaged one); the dashboard's browser test drives
# Debian's `chromium` through `chromium-driver`, installed when `chromium` or `chromedriver`
# is missing. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/test-venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum .ci/requirements.txt | cut -d' ' -f1)

make_venv() {
    rm -rf "$venv"
    python3 -m venv "$venv"
}

if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if ! make_venv 2>/dev/null; then
        # Debian ships venv's pip bootstrap in a package of its own.
        echo "python3 -m venv failed; installing python3-venv" >&2
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq python3-venv
        make_venv
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r .ci/requirements.txt
    echo "$want" > "$stamp"
fi

have_initdb() {
    command -v initdb >/dev/null 2>&1 && return 0
    local bin
    for bin in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$bin" ] && return 0
    done
    return 1
}

if [ -z "${WAM_TEST_POSTGRES:-}" ] && ! have_initdb; then
    echo "no initdb found; installing postgresql" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # The package's own cluster is neither needed nor started by the tests; where the
    # package starts it (a machine with systemd), it just sits beside them.
    $sudo apt-get install -y -qq postgresql
fi

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    echo "no chromium/chromedriver found; installing chromium and chromium-driver" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium chromium-driver
fi

export WAM_SCHEMATHESIS="$PWD/$venv/bin/schemathesis"
# The Python whose prometheus_client parses /metrics in the metrics test.
export WAM_TEST_PYTHON="$PWD/$venv/bin/python"
exec cargo test --locked --workspace "$@"
