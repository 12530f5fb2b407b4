#!/usr/bin/env bash
# Drops, recreates and migrates the database (ALL DATA IS LOST), after asking (--yes where
# there is no terminal). Refuses a non-local host unless --force is given. Same as
# `npm run db:reset`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec npm run --silent db:reset -- "$@"
