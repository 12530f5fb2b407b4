#!/usr/bin/env bash
# Backs up the database (pg_dump custom format) into $BACKUP_DIR as
# kennwilliamson_<env>_<UTC timestamp>.dump plus .sha256, verified, keeping the newest
# $BACKUP_KEEP. Prints the new file's path. Same as `npm run db:backup`; --help for more.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npm run --silent db:backup -- "$@"
