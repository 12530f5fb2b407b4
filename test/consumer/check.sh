#!/usr/bin/env bash
# The package as a service sees it: `npm pack`, then the tarball installed into a scratch
# service outside the repository with its own kysely (another 0.28 patch), and:
#   - the bin (plain node): setup --admin (as the superuser), setup (the release step, as the
#     owner role it made), migrate, migrate status, backup, restore, --help;
#   - import from ESM and require() from CommonJS, one copy of kysely;
#   - a strict TypeScript service (nodenext, skipLibCheck false) passing its own
#     Transaction<DB> to the query functions type-checks, then runs against the database.
# Needs a PostgreSQL: CONSUMER_DATABASE_URL names, as a superuser, a database to create and
# drop, with an owner role of its own (default: a scratch database on the embedded server
# that `npm run db:setup` starts, as its superuser).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
service_kysely=${CONSUMER_KYSELY_VERSION:-0.28.18}

work=$(mktemp -d "${TMPDIR:-/tmp}/kw-consumer-XXXXXX")
# The embedded server's superuser password is random, kept beside its data folder
# (`postgres` for a cluster made before that); it is URL-safe.
data_dir=${EMBEDDED_PG_DATA_DIR:-$repo/.data/postgres}
local_password=$(cat "$data_dir.password" 2>/dev/null || echo postgres)
admin_url=${CONSUMER_DATABASE_URL:-postgresql://postgres:$local_password@127.0.0.1:${EMBEDDED_PG_PORT:-54320}/kw_consumer_$$}
owner_user=kw_consumer_owner_$$
owner_password=$(node -e "process.stdout.write(require('node:crypto').randomBytes(12).toString('hex'))")
# The same server and database, as the owner role that setup --admin creates.
database_url=$(ADMIN_URL=$admin_url node -e "const u = new URL(process.env.ADMIN_URL); u.username = '$owner_user'; u.password = '$owner_password'; process.stdout.write(u.toString())")
cleanup() {
  (cd "$work/service" 2>/dev/null && DATABASE_URL=$admin_url OWNER=$owner_user node drop-database.mjs) || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "consumer check: packing"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
cp -r "$repo/test/consumer/service" "$work/service"
types_node=$(node -p "require('./package.json').devDependencies['@types/node']")
typescript=$(node -p "require('./package.json').devDependencies.typescript")
cd "$work/service"
cat > package.json <<JSON
{
  "name": "scratch-service",
  "private": true,
  "type": "module",
  "dependencies": {
    "@kennwilliamson/db": "file:../$tarball",
    "kysely": "$service_kysely"
  },
  "devDependencies": {
    "@types/node": "$types_node",
    "typescript": "$typescript"
  }
}
JSON
cat > drop-database.mjs <<'JS'
import pg from 'pg';
const url = new URL(process.env.DATABASE_URL);
const name = decodeURIComponent(url.pathname.slice(1));
url.pathname = '/postgres';
const client = new pg.Client({ connectionString: url.toString() });
await client.connect();
await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(process.env.OWNER)}`);
await client.end();
JS

echo "consumer check: installing $tarball with kysely@$service_kysely"
npm install --no-audit --no-fund --loglevel=error
test ! -e node_modules/tsx || { echo 'tsx was installed with the package'; exit 1; }

echo "consumer check: the bin"
bin=node_modules/.bin/kennwilliamson-db
"$bin" --help | grep -q '^  migrate '
"$bin" migrate --help | grep -q '^Usage: kennwilliamson-db migrate'
# The one-time admin step as the superuser, then the release step as the owner it made.
ADMIN_DATABASE_URL=$admin_url DB_OWNER_USER=$owner_user DB_OWNER_PASSWORD=$owner_password DATABASE_URL= "$bin" setup --admin
released=$(MIGRATION_DATABASE_URL=$database_url DATABASE_URL= "$bin" setup)
grep -q 'Database is up to date' <<<"$released" || { echo "$released"; exit 1; }
MIGRATION_DATABASE_URL=$database_url "$bin" migrate | grep -q 'Nothing to apply'
status=$(MIGRATION_DATABASE_URL=$database_url "$bin" migrate status)
echo "$status"
echo "$status" | grep -Eq '^[0-9]+ applied, 0 pending, 0 changed, 0 missing$'

# The compiled backup (its worker threads resolve from dist) and restore, by the bin. With no
# pg_dump >= the server's here, this is the WebAssembly pg_dump's plain-SQL path.
backup=$(MIGRATION_DATABASE_URL=$database_url BACKUP_DIR="$work/backups" "$bin" backup)
test -s "$backup" && test -s "$backup.sha256"
MIGRATION_DATABASE_URL=$database_url "$bin" restore "$backup" --yes
# Given the superuser's URL, the restore runs the backup as the owner, or not at all.
if MIGRATION_DATABASE_URL=$admin_url DB_OWNER_PASSWORD= "$bin" restore "$backup" --yes 2>/dev/null; then
  echo 'a restore ran as the superuser'; exit 1
fi
restored=$(MIGRATION_DATABASE_URL=$admin_url DB_OWNER_PASSWORD=$owner_password "$bin" restore "$backup" --yes 2>&1)
grep -q "restoring as the database's owner '$owner_user'" <<<"$restored" || { echo "$restored"; exit 1; }

echo "consumer check: ESM and CommonJS"
SERVICE_KYSELY_VERSION=$service_kysely node import-check.mjs
node require-check.cjs

echo "consumer check: a strict TypeScript service with its own Transaction<DB>"
npx tsc -p tsconfig.json
DATABASE_URL=$database_url node dist/service.js
echo "consumer check: passed"
