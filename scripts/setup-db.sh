#!/usr/bin/env bash
# Starts the local embedded PostgreSQL when DATABASE_URL is unset and provisions it as its
# superuser (database, non-superuser owner role), then applies pending migrations as that
# owner, keeping data; with a URL set, the release step. Same as `npm run db:setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npm run --silent db:setup -- "$@"
