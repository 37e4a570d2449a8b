#!/usr/bin/env bash
# The whole test suite. The tests start what they need themselves (a throwaway PostgreSQL
# among them, see crates/pg-testing); this installs what is missing from the machine first
# (PostgreSQL 15 with pg_trgm, from Debian's packages), then runs `cargo test --workspace`.
# Arguments go to cargo test. With CHATD_TEST_DATABASE_URL set, nothing is installed: the
# tests use that server.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null &&
        compgen -G '/usr/share/postgresql/*/extension/pg_trgm.control' >/dev/null
}

if [ -z "${CHATD_TEST_DATABASE_URL:-}" ] && ! have_postgres; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the tests need PostgreSQL 15 with pg_trgm: sudo apt-get install postgresql-15 postgresql-contrib," \
            "or set CHATD_TEST_DATABASE_URL to a server of yours" >&2
        exit 1
    fi
    echo "== installing PostgreSQL 15 (apt)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 postgresql-contrib
fi

exec cargo test --workspace "$@"
