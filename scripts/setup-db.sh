#!/usr/bin/env bash
# Starts the local embedded PostgreSQL when DATABASE_URL is unset, creates the database if
# needed and applies pending migrations, keeping data. Same as `npm run db:setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npm run --silent db:setup -- "$@"
