#!/usr/bin/env bash
# Copies a backup (and its .sha256) from HOST's backup folder into $BACKUP_DIR over SSH,
# verified: scripts/download-backup.sh HOST FILE [--key PATH]. Same as
# `npm run db:download-backup`; --help for more.
set -euo pipefail
# In the package, as npm runs it; a relative folder or file given (BACKUP_DIR, a FILE) means the
# caller's folder, which npm passes on as INIT_CWD.
exec npm --prefix "$(dirname "$0")/.." run --silent db:download-backup -- "$@"
