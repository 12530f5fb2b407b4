#!/usr/bin/env bash
# Drops, recreates and migrates the database (ALL DATA IS LOST), after asking (--yes where
# there is no terminal). Refuses a non-local host unless --force is given. Same as
# `npm run db:reset`.
set -euo pipefail
# In the package, as npm runs it; a relative folder or file given (BACKUP_DIR, a FILE) means the
# caller's folder, which npm passes on as INIT_CWD.
exec npm --prefix "$(dirname "$0")/.." run --silent db:reset -- "$@"
