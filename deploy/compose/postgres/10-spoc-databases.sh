#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# one database and one login user per Spoc service. Each user owns its own database and cannot
# connect to the others', so no service can read another's data.
set -euo pipefail

create_service_database() {
  local service=$1 password=$2
  # psql variables (:"name" quotes an identifier, :'name' a literal) keep the password out of
  # the SQL text and handle any quoting in it.
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v name="spoc_$service" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "spoc: created database and user spoc_$service"
}

create_service_database intake  "${SPOC_INTAKE_DB_PASSWORD:?set SPOC_INTAKE_DB_PASSWORD}"
create_service_database routing "${SPOC_ROUTING_DB_PASSWORD:?set SPOC_ROUTING_DB_PASSWORD}"
create_service_database sla     "${SPOC_SLA_DB_PASSWORD:?set SPOC_SLA_DB_PASSWORD}"
create_service_database notify  "${SPOC_NOTIFY_DB_PASSWORD:?set SPOC_NOTIFY_DB_PASSWORD}"
