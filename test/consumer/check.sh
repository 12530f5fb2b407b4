#!/usr/bin/env bash
# The package as services get it: `npm pack`, then the tarball installed into a scratch service
# outside the repository with its own kysely (another 0.28 patch), and the kinds of service
# the Node ecosystem runs (issue 18), each a check of its own:
#   footprint      what a service installs (the package and kysely): at most 30 MB, no
#                  @electric-sql/pglite (the WebAssembly pg_dump is an optional peer)
#   startup        the package entry loads neither the migrator (Umzug, libpg-query) nor the
#                  operations; prints start-up figures against kysely + pg alone
#   bin            setup --admin (as the superuser), setup (the release step, as the owner role
#                  it made), migrate, migrate status, --help with plain node (always: the
#                  others need the database it sets up)
#   backup         without the optional @electric-sql/pglite-tools backup says what to install;
#                  with it, a backup (the WebAssembly pg_dump here) and its restore, as the owner
#                  (given the superuser's URL too)
#   modules        import and require() of both entries, one copy of kysely at run time each
#   typescript     an ES module TypeScript service (nodenext, skipLibCheck false) passing its own
#                  Transaction<DB> to the query functions; with exactOptionalPropertyTypes, passing
#                  `undefined` to optional fields (and every optional field of the public types,
#                  mapped types' included, walked from both entries, takes it), and declarations
#                  of its own helpers
#   cjs-nodenext   a CommonJS TypeScript service (nodenext): every query function takes its own
#                  Transaction<DB> and Kysely<DB>, sql runs on the package's db, one Kysely
#   cjs-node10     a CommonJS TypeScript service with NestJS's default resolution (node10), and
#                  the same type-checked without esModuleInterop and allowSyntheticDefaultImports
#                  (the package's declarations import no default export of pg)
#   opentelemetry  a service with @opentelemetry/instrumentation-pg: every statement one ended
#                  span under the request's, the pool named by host, port and database
#   camelcase      CamelCasePlugin (db.withPlugin, a service's own Kysely and its transaction):
#                  every query function returns and writes what it does on the plain db
#   bundle         the service bundled with esbuild (ES module, and CommonJS from the same
#                  source) and run away from node_modules, with the package's migrations copied
# CONSUMER_CHECKS="footprint startup …" runs only those (default: all). Needs a PostgreSQL:
# CONSUMER_DATABASE_URL names, as a superuser, a database to create and drop, with an owner
# role of its own (default: a scratch database on the embedded server that `npm run db:setup`
# starts, as its superuser). CONSUMER_TARBALL checks that tarball instead of packing this
# checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
service_kysely=${CONSUMER_KYSELY_VERSION:-0.28.18}
checks=${CONSUMER_CHECKS:-footprint startup backup modules typescript cjs-nodenext cjs-node10 opentelemetry camelcase bundle}
wants() { [[ " $checks " == *" $1 "* ]]; }
# Runs a service, which must end by saying ': ok': one that exits early, with code 0 and nothing
# said (a process whose event loop emptied before its work was done), fails the check.
says_ok() {
  local out
  out=$("$@")
  printf '%s\n' "$out"
  [[ "$out" == *": ok"* ]] || { echo "$* ended without saying it was ok"; exit 1; }
}
dev_version() { node -p "require('$repo/package.json').devDependencies['$1']"; }

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

if [ -n "${CONSUMER_TARBALL:-}" ]; then
  tarball=$(basename "$CONSUMER_TARBALL")
  cp "$CONSUMER_TARBALL" "$work/$tarball"
else
  echo "consumer check: packing"
  tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
fi
cp -r "$repo/test/consumer/service" "$work/service"
# The CamelCasePlugin service runs the cases of the repository's own test, against the package as installed.
sed "s#'../../src/index.js'#'@kennwilliamson/db'#" "$repo/test/support/plugin-cases.ts" > "$work/service/src/plugin-cases.ts"
cd "$work/service"
cat > package.json <<JSON
{
  "name": "scratch-service",
  "private": true,
  "type": "module",
  "dependencies": {
    "@kennwilliamson/db": "file:../$tarball",
    "kysely": "$service_kysely"
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

if wants footprint; then
  kilobytes=$(du -sk node_modules | cut -f1)
  echo "consumer check: footprint: $((kilobytes / 1024)) MB in node_modules (goal: at most 30 MB); the largest:"
  du -sk node_modules/* node_modules/@*/* 2>/dev/null | grep -v '/@[^/]*$' | sort -rn | head -n 6 | awk '{ printf "  %6.1f MB  %s\n", $1 / 1024, $2 }'
  test "$kilobytes" -le $((30 * 1024)) || { echo "node_modules holds more than 30 MB"; exit 1; }
  test ! -e node_modules/@electric-sql/pglite || { echo '@electric-sql/pglite (never loaded) was installed'; exit 1; }
  # The source maps it ships carry their sources: src/ is not in the package.
  node -e "
    const { readdirSync, readFileSync } = require('node:fs');
    const maps = readdirSync('node_modules/@kennwilliamson/db/dist', { recursive: true }).filter((file) => file.endsWith('.map'));
    const bare = maps.filter((file) => {
      const map = JSON.parse(readFileSync('node_modules/@kennwilliamson/db/dist/' + file, 'utf8'));
      return map.sources.some((_, i) => typeof map.sourcesContent?.[i] !== 'string');
    });
    if (maps.length === 0 || bare.length > 0) { console.error('source maps without their sources: ' + (bare.join(', ') || 'no maps at all')); process.exit(1); }"
fi

bin=node_modules/.bin/kennwilliamson-db
# Every later check needs the migrated database.
echo "consumer check: the bin"
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

if wants startup; then
  echo "consumer check: start-up"
  DATABASE_URL=$database_url says_ok node startup.mjs
fi

if wants backup; then
  # With no pg_dump >= the server's here, a backup needs the WebAssembly pg_dump, an optional
  # peer dependency that the service has not installed yet: the command says what to install.
  echo "consumer check: backup without the optional WebAssembly pg_dump"
  if refusal=$(MIGRATION_DATABASE_URL=$database_url BACKUP_DIR="$work/backups" "$bin" backup 2>&1); then
    echo "$refusal"; echo 'backup succeeded without @electric-sql/pglite-tools, or found a native pg_dump: nothing checked'; exit 1
  fi
  echo "$refusal" | tail -n 1
  echo "$refusal" | grep -q 'npm install @electric-sql/pglite-tools@' || { echo "$refusal"; exit 1; }
  test ! -e "$work/backups" || test -z "$(ls -A "$work/backups")"
  pglite_tools=$(node -p "require('./node_modules/@kennwilliamson/db/package.json').peerDependencies['@electric-sql/pglite-tools']")
  npm install --no-audit --no-fund --loglevel=error "@electric-sql/pglite-tools@$pglite_tools"
  # The compiled backup (its worker threads resolve from dist) and restore, by the bin.
  echo "consumer check: backup and restore"
  backup=$(MIGRATION_DATABASE_URL=$database_url BACKUP_DIR="$work/backups" "$bin" backup)
  test -s "$backup" && test -s "$backup.sha256"
  MIGRATION_DATABASE_URL=$database_url "$bin" restore "$backup" --yes
  # Given the superuser's URL, the restore runs the backup as the owner, or not at all.
  if MIGRATION_DATABASE_URL=$admin_url DB_OWNER_PASSWORD= "$bin" restore "$backup" --yes 2>/dev/null; then
    echo 'a restore ran as the superuser'; exit 1
  fi
  restored=$(MIGRATION_DATABASE_URL=$admin_url DB_OWNER_PASSWORD=$owner_password "$bin" restore "$backup" --yes 2>&1)
  grep -q "restoring as the database's owner '$owner_user'" <<<"$restored" || { echo "$restored"; exit 1; }
fi

if wants modules; then
  echo "consumer check: ESM and CommonJS"
  SERVICE_KYSELY_VERSION=$service_kysely says_ok node import-check.mjs
  says_ok node require-check.cjs
fi

if wants typescript || wants cjs-nodenext || wants cjs-node10 || wants opentelemetry || wants camelcase; then
  echo "consumer check: installing the service's development tools"
  npm install --no-audit --no-fund --loglevel=error --save-dev \
    "typescript@$(dev_version typescript)" "@types/node@$(dev_version @types/node)" \
    "@opentelemetry/api@$(dev_version @opentelemetry/api)" \
    "@opentelemetry/context-async-hooks@$(dev_version @opentelemetry/context-async-hooks)" \
    "@opentelemetry/instrumentation-pg@$(dev_version @opentelemetry/instrumentation-pg)" \
    "@opentelemetry/sdk-metrics@$(dev_version @opentelemetry/sdk-metrics)" \
    "@opentelemetry/sdk-trace-base@$(dev_version @opentelemetry/sdk-trace-base)"
  # A service with its own Kysely has pg of its own; the same version as the package's.
  npm install --no-audit --no-fund --loglevel=error "pg@$(node -p "require('./node_modules/@kennwilliamson/db/package.json').dependencies.pg")"
fi

# The service's own compiler, by its path: npx in a folder without it would fetch the
# public registry's unrelated package named `tsc`.
tsc=$work/service/node_modules/.bin/tsc
if wants typescript || wants camelcase; then
  echo "consumer check: compiling the ES module TypeScript service"
  "$tsc" -p tsconfig.json
fi

if wants typescript; then
  echo "consumer check: every optional field of the public types takes undefined"
  says_ok node optional-fields.cjs
  echo "consumer check: a strict TypeScript service with its own Transaction<DB>"
  DATABASE_URL=$database_url says_ok node dist/service.js
fi

for flavour in cjs-nodenext cjs-node10; do
  if wants "$flavour"; then
    echo "consumer check: a CommonJS TypeScript service ($(node -p "require('./$flavour/tsconfig.json').compilerOptions.moduleResolution"))"
    mkdir -p "$flavour/src" && cp commonjs-service.ts "$flavour/src/service.ts"
    (cd "$flavour" && "$tsc" -p tsconfig.json && DATABASE_URL=$database_url says_ok node dist/service.js)
  fi
done
if wants cjs-node10; then
  echo "consumer check: the node10 service without esModuleInterop or allowSyntheticDefaultImports"
  (cd cjs-node10 && "$tsc" -p tsconfig.no-interop.json)
fi

if wants opentelemetry; then
  echo "consumer check: an OpenTelemetry-instrumented service"
  DATABASE_URL=$database_url says_ok node --require ./opentelemetry/tracing.cjs opentelemetry/service.cjs
fi

if wants camelcase; then
  echo "consumer check: a CamelCasePlugin service, every query function against the plain db"
  DATABASE_URL=$database_url says_ok node dist/camel-case.js
fi
if wants bundle; then
  # The repository's esbuild (the service installs no bundler), as the README's note on bundling
  # says: libpg-query external, the migrations folder copied, passed as migrationsDir. The
  # deployed folder lies outside the service: the bundle finds no node_modules but the one
  # kept for libpg-query, and the nearest package.json and migrations/ are the service's own.
  deployed=$work/deployed
  mkdir -p "$deployed/migrations" "$deployed/node_modules"
  mkdir -p "$deployed/node_modules/@pgsql"
  cp -r node_modules/libpg-query "$deployed/node_modules/"
  cp -r node_modules/@pgsql/types "$deployed/node_modules/@pgsql/" # libpg-query's one dependency
  cp -r node_modules/@kennwilliamson/db/migrations "$deployed/package-migrations"
  printf '{ "name": "scratch-service", "private": true }\n' > "$deployed/package.json"
  printf 'CREATE TABLE service_jobs (id int);\n' > "$deployed/migrations/20990101000000_service_jobs.up.sql"
  printf 'DROP TABLE service_jobs;\n' > "$deployed/migrations/20990101000000_service_jobs.down.sql"
  for format in esm cjs; do
    echo "consumer check: the service bundled by esbuild as $format, run with its bundle alone"
    # pg's own run-time require()s need a require in an ES module bundle, as esbuild's docs say.
    extension=cjs options=()
    [ "$format" = esm ] && extension=mjs options=("--banner:js=import { createRequire as kwRequire } from 'node:module'; const require = kwRequire(import.meta.url);")
    "$repo/node_modules/.bin/esbuild" bundled-service.mjs --bundle --platform=node --target=node20 --format="$format" \
      --external:libpg-query "${options[@]}" --log-level=error --outfile="$deployed/$format/service.$extension"
    (cd "$deployed" && DATABASE_URL=$database_url MIGRATIONS_DIR=$deployed/package-migrations BACKUP_DIR=$deployed/backups says_ok node "$format/service.$extension" "$format")
  done
fi
echo "consumer check: passed ($checks)"
