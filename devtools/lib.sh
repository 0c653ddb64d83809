# Shared by devtools/run_tests and devtools/run_demo: find Odoo 18 and PostgreSQL, or stop loudly.
# shellcheck shell=bash

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DB_HOST="${ODOO_DB_HOST:-127.0.0.1}"
DB_PORT="${ODOO_DB_PORT:-5432}"
DB_USER="${ODOO_DB_USER:-odoo}"

die() { echo "ERROR: $*" >&2; exit 1; }
say() { echo "==> $*"; }

# A Python that imports Odoo 18: $ODOO_PYTHON, else the usual places of a source install.
find_odoo() {
    local candidates=("${ODOO_PYTHON:-}" /opt/odoo18-venv/bin/python /opt/odoo/venv/bin/python
                      /opt/odoo18/.venv/bin/python "$HOME/odoo18-venv/bin/python" "$(command -v python3 || true)")
    local py
    for py in "${candidates[@]}"; do
        [ -n "$py" ] && [ -x "$py" ] || continue
        if ODOO_HOME="$("$py" - <<'PY' 2>/dev/null
import os, odoo
assert odoo.release.version_info[0] == 18, odoo.release.version
print(os.path.dirname(os.path.dirname(os.path.abspath(odoo.__file__))))
PY
)" && [ -f "$ODOO_HOME/odoo-bin" ]; then
            ODOO_PY="$py"
            ODOO_BIN="$ODOO_HOME/odoo-bin"
            ADDONS_PATH="$ODOO_HOME/addons,$ODOO_HOME/odoo/addons,$REPO_DIR"
            export ODOO_PY ODOO_BIN ODOO_HOME ADDONS_PATH
            return 0
        fi
    done
    die "no Odoo 18 found. Install Odoo 18.0 from source in a virtualenv (see README.md, 'Requirements') and set ODOO_PYTHON=/path/to/venv/bin/python, or install it at /opt/odoo18 with its venv at /opt/odoo18-venv."
}

psql_as() { psql -h "$DB_HOST" -p "$DB_PORT" -U "$1" -d postgres -tAc "$2"; }

# PostgreSQL must answer, and Odoo needs a role other than 'postgres'.
check_postgres() {
    command -v psql >/dev/null || die "psql not found: install the PostgreSQL client."
    [ "$DB_USER" != "postgres" ] || die "Odoo refuses the role 'postgres': set ODOO_DB_USER to another role."
    if ! psql_as "$DB_USER" "select 1" >/dev/null 2>&1; then
        psql_as postgres "select 1" >/dev/null 2>&1 \
            || die "PostgreSQL does not answer on $DB_HOST:$DB_PORT (as $DB_USER or postgres). Start it, or set ODOO_DB_HOST/ODOO_DB_PORT/ODOO_DB_USER."
        say "creating PostgreSQL role $DB_USER"
        psql_as postgres "CREATE ROLE \"$DB_USER\" LOGIN CREATEDB" >/dev/null || die "could not create role $DB_USER"
    fi
}

install_requirements() {
    "$ODOO_PY" -m pip install -q --disable-pip-version-check -r "$REPO_DIR/requirements-test.txt" \
        || die "could not install requirements-test.txt into $ODOO_PY"
}

# The browser tests (Odoo tours) drive a headless Chromium; Debian's package will do (Odoo runs it
# without sandbox, so root is fine). Installed when missing; the run stops if that fails.
ensure_chromium() {
    local bin
    for bin in chromium google-chrome chromium-browser google-chrome-stable; do
        command -v "$bin" >/dev/null && return 0
    done
    command -v apt-get >/dev/null || die "Chromium is missing and apt-get is not available: install Chromium or Google Chrome for the browser tests."
    local sudo=""
    [ "$(id -u)" = "0" ] || sudo="sudo"
    say "installing chromium (for the browser tests)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >/dev/null \
        || die "could not install chromium (apt-get install -y chromium); the browser tests need it."
    command -v chromium >/dev/null || die "chromium is still not found after installing it."
}

odoo_bin() {
    "$ODOO_PY" "$ODOO_BIN" --addons-path="$ADDONS_PATH" --db_host="$DB_HOST" --db_port="$DB_PORT" \
        --db_user="$DB_USER" "$@"
}

# `odoo-bin shell` wants its subcommand first.
odoo_shell() {
    "$ODOO_PY" "$ODOO_BIN" shell --addons-path="$ADDONS_PATH" --db_host="$DB_HOST" --db_port="$DB_PORT" \
        --db_user="$DB_USER" --no-http "$@"
}

drop_db() { dropdb -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" --if-exists --force "$1" 2>/dev/null || true; }
