import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { columnOverrides } from '../../src/cli/dev/column-overrides.js';
import { withClient } from '../../src/db/with-client.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// What codegen reads of the live schema, on every major the suite runs: a union of literals
// narrower than what the table reads back would make its real values type errors (an audit of
// the generated types found each of these).
describe("codegen's column types, where a CHECK binds less than its list", () => {
  let database: TestDatabase;
  let major: number;
  beforeAll(async () => {
    database = await createTestDatabase({ empty: true });
    major = await withClient(database.url, async (client) => (await client.query<{ major: number }>("SELECT current_setting('server_version_num')::int / 10000 AS major")).rows[0]!.major);
  });
  afterAll(() => database?.drop());

  const overrides = (sql: string) =>
    withClient(database.url, async (client) => {
      await client.query(`BEGIN; ${sql}`);
      try {
        return await columnOverrides(client, {});
      } finally {
        await client.query('ROLLBACK');
      }
    });

  // A domain public.varchar of one character took its cast for varchar's, and 'abc' was typed away.
  it("reads a cast to another schema's type named as PostgreSQL's as no list", async () => {
    const found = await overrides(
      "CREATE DOMAIN public.varchar AS pg_catalog.varchar(1); CREATE TABLE tr (c text CHECK (c::public.varchar IN ('a', 'b')), d text CHECK (d::varchar IN ('a', 'b')));",
    );

    expect(found.columns['public.tr.c']).toBeUndefined();
    expect(found.notUnderstood).toEqual(['tr.c (tr_c_check)']);
    expect(found.columns['public.tr.d']).toBe('"a" | "b" | null');
  });

  // A foreign table checks nothing, and its rows are read through the parent.
  it('narrows no column of a table with a foreign table among its children or partitions', async () => {
    const found = await overrides(
      'CREATE FOREIGN DATA WRAPPER kw_nowhere; CREATE SERVER kw_nowhere FOREIGN DATA WRAPPER kw_nowhere; ' +
        "CREATE TABLE p (s text NOT NULL CHECK (s IN ('a', 'b'))); CREATE TABLE p_child () INHERITS (p); CREATE FOREIGN TABLE p_far () INHERITS (p_child) SERVER kw_nowhere; " +
        "CREATE TABLE pp (s text NOT NULL CHECK (s IN ('a', 'b'))) PARTITION BY LIST (s); CREATE FOREIGN TABLE pp_far PARTITION OF pp FOR VALUES IN ('b') SERVER kw_nowhere; " +
        "CREATE TABLE kept (s text NOT NULL CHECK (s IN ('a', 'b')));",
    );

    expect(found.columns['public.p.s']).toBeUndefined();
    expect(found.columns['public.pp.s']).toBeUndefined();
    // p_child has p's CHECK too, and the foreign table below it.
    expect(found.notBinding).toEqual(['p.s (p_s_check)', 'p_child.s (p_s_check)', 'pp.s (pp_s_check)']);
    expect(found.columns['public.kept.s']).toBe('"a" | "b"');
  });

  // PostgreSQL 18: NOT NULL … NOT VALID sets attnotnull while a NULL from before it stays, and a
  // NOT ENFORCED CHECK is never checked.
  it('keeps null for a NOT NULL that is NOT VALID, and narrows nothing by a NOT ENFORCED CHECK (18 and later)', async ({ skip }) => {
    if (major < 18) skip();
    const found = await overrides(
      "CREATE TABLE nn (c text CHECK (c IN ('a', 'b'))); INSERT INTO nn VALUES (NULL); ALTER TABLE nn ADD CONSTRAINT nn_c_nn NOT NULL c NOT VALID; " +
        "CREATE TABLE ne (c text NOT NULL, CONSTRAINT ne_c_check CHECK (c IN ('a', 'b')) NOT ENFORCED);",
    );

    expect(found.columns['public.nn.c']).toBe('"a" | "b" | null');
    expect(found.columns['public.ne.c']).toBeUndefined();
    expect(found.notBinding).toEqual(['ne.c (ne_c_check)']);
  });
});
