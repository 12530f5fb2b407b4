/**
 * A crafted backup's SQL with the migrations record every real backup has, as pg_dump writes
 * it, empty (no migration applied), before the dump's trailer: a restore refuses a backup that
 * makes something but has no record. SQL that makes nothing, or has a record (forged or not) of
 * its own, is left as it is.
 *
 * @example await writeFile(file, gzipSync(withMigrationsRecord(dumpAround('CREATE TABLE public.planted (id integer);'))))
 */
export function withMigrationsRecord(sql: string): string {
  if (!/^CREATE /m.test(sql) || sql.includes('public.schema_migrations')) return sql;
  const trailer = sql.lastIndexOf('--\n-- PostgreSQL database dump complete\n--');
  return trailer < 0 ? `${sql}\n${emptyRecord}` : `${sql.slice(0, trailer)}${emptyRecord}\n${sql.slice(trailer)}`;
}

const emptyRecord =
  'CREATE TABLE public.schema_migrations (\n    name text NOT NULL,\n    checksum text NOT NULL,\n' +
  '    applied_at timestamp with time zone DEFAULT now() NOT NULL,\n    duration_ms integer NOT NULL,\n' +
  "    CONSTRAINT schema_migrations_checksum_check CHECK ((checksum ~ '^[0-9a-f]{64}$'::text)),\n" +
  '    CONSTRAINT schema_migrations_duration_ms_check CHECK ((duration_ms >= 0))\n);\n\n' +
  'ALTER TABLE ONLY public.schema_migrations\n    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (name);\n';
