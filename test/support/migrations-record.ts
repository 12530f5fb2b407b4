import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { checksumOf } from '../../src/migrations/migration-files.js';

/**
 * A crafted backup's SQL with the migrations record every real backup has, as pg_dump writes
 * it, before the dump's trailer: every migration of the package, applied (a restore refuses a
 * backup whose tables have no migration recorded). SQL that makes nothing, or has a record
 * (forged or not) of its own, is left as it is.
 *
 * @example await writeFile(file, gzipSync(withMigrationsRecord(dumpAround('CREATE TABLE public.planted (id integer);'))))
 */
export function withMigrationsRecord(sql: string): string {
  if (!/^CREATE /m.test(sql) || sql.includes('public.schema_migrations')) return sql;
  const trailer = sql.lastIndexOf('--\n-- PostgreSQL database dump complete\n--');
  return trailer < 0 ? `${sql}\n${packageRecord()}` : `${sql.slice(0, trailer)}${packageRecord()}\n${sql.slice(trailer)}`;
}

/**
 * The record's table and rows, as pg_dump writes them, for `migrations` (name and the up
 * file's SQL; default: the package's own).
 *
 * @example migrationsRecordSql([{ name: '20990101000000_items', upSql: 'CREATE TABLE items (…);\n' }])
 */
export function migrationsRecordSql(migrations: ReadonlyArray<{ name: string; upSql: string }>): string {
  const rows = migrations.map(({ name, upSql }) => `${name}\t${checksumOf(upSql)}\t2025-09-14 13:46:43.512+00\t12\n`).join('');
  return (
    'CREATE TABLE public.schema_migrations (\n    name text NOT NULL,\n    checksum text NOT NULL,\n' +
    '    applied_at timestamp with time zone DEFAULT now() NOT NULL,\n    duration_ms integer NOT NULL,\n' +
    "    CONSTRAINT schema_migrations_checksum_check CHECK ((checksum ~ '^[0-9a-f]{64}$'::text)),\n" +
    '    CONSTRAINT schema_migrations_duration_ms_check CHECK ((duration_ms >= 0))\n);\n\n' +
    `COPY public.schema_migrations (name, checksum, applied_at, duration_ms) FROM stdin;\n${rows}\\.\n\n` +
    'ALTER TABLE ONLY public.schema_migrations\n    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (name);\n'
  );
}

let packageRecordSql: string | undefined;
const packageRecord = () => {
  const dir = defaultMigrationsDir();
  packageRecordSql ??= migrationsRecordSql(
    readdirSync(dir)
      .filter((file) => file.endsWith('.up.sql'))
      .sort()
      .map((file) => ({ name: file.slice(0, -'.up.sql'.length), upSql: readFileSync(path.join(dir, file), 'utf8') })),
  );
  return packageRecordSql;
};
