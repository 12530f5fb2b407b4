#!/usr/bin/env bash
# Copies a backup (and its .sha256) from HOST's backup folder into $BACKUP_DIR over SSH,
# verified: scripts/download-backup.sh HOST FILE [--key PATH]. Same as
# `npm run db:download-backup`; --help for more.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npm run --silent db:download-backup -- "$@"
