#!/usr/bin/env bash
# Run once by the postgres image when it creates its cluster (docker-compose.yml
# mounts this folder as /docker-entrypoint-initdb.d): makes the server's role, with
# the password of the server_password secret, and grants it what docs/deployment.md's
# section on roles grants, no more. The tables do not exist yet: `migrate` makes them
# as the owner, and the default privileges below hand them to the server's role.
set -euo pipefail
password=$(cat "${EXCHANGE_SERVER_PASSWORD_FILE:-/run/secrets/server_password}")
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$password" <<'SQL'
CREATE ROLE exchange LOGIN PASSWORD :'password';
REVOKE ALL ON DATABASE exchange FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE exchange TO exchange;
GRANT USAGE ON SCHEMA public TO exchange;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO exchange;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO exchange;
ALTER DEFAULT PRIVILEGES FOR ROLE exchange_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE ON TABLES TO exchange;
ALTER DEFAULT PRIVILEGES FOR ROLE exchange_owner IN SCHEMA public
    GRANT USAGE ON SEQUENCES TO exchange;
SQL
