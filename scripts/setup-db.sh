#!/usr/bin/env bash
# Starts the local embedded PostgreSQL when neither DATABASE_URL nor MIGRATION_DATABASE_URL is
# set (nor, with --admin, ADMIN_DATABASE_URL) and provisions it as its
# superuser (database, non-superuser owner role), then applies pending migrations as that
# owner, keeping data; with a URL set, the release step. Same as `npm run db:setup`.
set -euo pipefail
# In the package, as npm runs it; a relative folder or file given (BACKUP_DIR, a FILE) means the
# caller's folder, which npm passes on as INIT_CWD.
exec npm --prefix "$(dirname "$0")/.." run --silent db:setup -- "$@"
