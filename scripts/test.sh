#!/usr/bin/env bash
# The whole test suite. The tests start what they need themselves (a throwaway PostgreSQL and
# a throwaway MariaDB among them, see crates/pg-testing and crates/mariadb-testing, and a
# headless chromium for crates/server/tests/browser); this installs what is missing from the
# machine first (PostgreSQL 15 with pg_trgm, MariaDB's server and client, chromium and its
# chromedriver, from Debian's packages), then runs `cargo test --workspace`.
# Arguments go to cargo test. With CHATD_TEST_DATABASE_URL set, PostgreSQL is not installed,
# and with CHATD_TEST_MYSQL_URL set, MariaDB is not: the tests use those servers.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null &&
        compgen -G '/usr/share/postgresql/*/extension/pg_trgm.control' >/dev/null
}

have_mariadb() {
    PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mariadbd >/dev/null &&
        command -v mariadb-install-db >/dev/null && command -v mariadb >/dev/null
}

have_chromium() {
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$1" >&2
        exit 1
    fi
}

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        apt-get update -q
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [ -z "${CHATD_TEST_DATABASE_URL:-}" ] && ! have_postgres; then
    need_root "the tests need PostgreSQL 15 with pg_trgm: sudo apt-get install postgresql-15 postgresql-contrib, or set CHATD_TEST_DATABASE_URL to a server of yours"
    echo "== installing PostgreSQL 15 (apt)"
    apt_install postgresql-15 postgresql-contrib
fi

if [ -z "${CHATD_TEST_MYSQL_URL:-}" ] && ! have_mariadb; then
    need_root "the tests need MariaDB: sudo apt-get install mariadb-server mariadb-client, or set CHATD_TEST_MYSQL_URL to a server of yours"
    echo "== installing MariaDB (apt)"
    apt_install mariadb-server mariadb-client
fi

if ! have_chromium; then
    need_root "the browser tests need Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver"
    echo "== installing chromium and chromedriver (apt)"
    apt_install chromium chromium-driver
fi

exec cargo test --workspace "$@"
