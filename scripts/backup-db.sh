#!/usr/bin/env bash
# Backs up the database (pg_dump custom format) into $BACKUP_DIR as
# <database>_<env>_<UTC timestamp>.dump plus .sha256, verified, keeping the newest
# $BACKUP_KEEP. Prints the new file's path. Same as `npm run db:backup`; --help for more.
set -euo pipefail
# In the package, as npm runs it; a relative folder or file given (BACKUP_DIR, a FILE) means the
# caller's folder, which npm passes on as INIT_CWD.
exec npm --prefix "$(dirname "$0")/.." run --silent db:backup -- "$@"
