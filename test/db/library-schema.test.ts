import {
  CamelCasePlugin,
  DummyDriver,
  Kysely,
  type KyselyPlugin,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  sql,
  WithSchemaPlugin,
} from 'kysely';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { inLibrarySchema } from '../../src/db/library-schema.js';

// Compiled only: what the server would be sent.
const plain = new Kysely<DB>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});
const db = inLibrarySchema(plain);

describe('inLibrarySchema', () => {
  it('names the schema of every table a statement reads, joins or writes, and nothing else', () => {
    const query = db
      .selectFrom('users as u')
      .innerJoin('user_roles', 'user_roles.user_id', 'u.id')
      .select(['u.id', 'user_roles.role_id'])
      .where('u.id', 'in', (eb) => eb.selectFrom('refresh_tokens').select('refresh_tokens.user_id'))
      .where(({ exists, selectFrom }) => exists(selectFrom('roles').select('roles.id').whereRef('roles.id', '=', 'user_roles.role_id')))
      .forUpdate('u');
    expect(query.compile().sql).toBe(
      'select "u"."id", "user_roles"."role_id" from "public"."users" as "u" ' +
        'inner join "public"."user_roles" on "user_roles"."user_id" = "u"."id" ' +
        'where "u"."id" in (select "refresh_tokens"."user_id" from "public"."refresh_tokens") ' +
        'and exists (select "roles"."id" from "public"."roles" where "roles"."id" = "user_roles"."role_id") for update of "u"',
    );
  });

  it('leaves CTE names, lateral subqueries and raw fragments as written, and qualifies sql.table', () => {
    const query = db
      .with('owner', (qb) => qb.selectFrom('users').select('users.id'))
      .selectFrom('owner')
      .leftJoinLateral(
        (eb) => eb.selectFrom('phrases').select('phrases.id').where('phrases.created_by', '=', sql.ref<string>('owner.id')).as('hit'),
        (join) => join.onTrue(),
      )
      .select(['owner.id', 'hit.id as phraseId', sql<number>`(select count(*) from ${sql.table('incident_timers')})`.as('timers')]);
    expect(query.compile().sql).toBe(
      'with "owner" as (select "users"."id" from "public"."users") select "owner"."id", "hit"."id" as "phraseId", ' +
        '(select count(*) from "public"."incident_timers") as "timers" from "owner" ' +
        'left join lateral (select "phrases"."id" from "public"."phrases" where "phrases"."created_by" = "owner"."id") as "hit" on true',
    );
  });

  it('qualifies INSERT, UPDATE … FROM and DELETE, and never reads into the values it sends', () => {
    const lookalike = { kind: 'TableNode', table: { kind: 'SchemableIdentifierNode', identifier: { kind: 'IdentifierNode', name: 'users' } } };
    const insert = db.insertInto('refresh_tokens').values({ user_id: 'u', token_hash: Buffer.alloc(32), family_id: 'f', expires_at: new Date(0), family_expires_at: new Date(0), device_info: lookalike }).compile();
    expect(insert.sql).toMatch(/^insert into "public"\."refresh_tokens" /);
    expect(insert.parameters).toContain(lookalike);
    expect(
      db
        .with('created', (qb) => qb.insertInto('phrases').values({ phrase_text: 'x' }).returning('phrases.id'))
        .updateTable('phrase_suggestions')
        .from('created')
        .set((eb) => ({ phrase_id: eb.ref('created.id') }))
        .compile().sql,
    ).toBe(
      'with "created" as (insert into "public"."phrases" ("phrase_text") values ($1) returning "phrases"."id") ' +
        'update "public"."phrase_suggestions" set "phrase_id" = "created"."id" from "created"',
    );
    expect(db.deleteFrom('user_excluded_phrases').where('user_id', '=', 'u').compile().sql).toBe(
      'delete from "public"."user_excluded_phrases" where "user_id" = $1',
    );
  });

  it("keeps the library's schema over a caller's withSchema, and the caller's other plugins", () => {
    expect(inLibrarySchema(plain.withSchema('elsewhere')).selectFrom('users').select('users.id').compile().sql).toBe(
      'select "public"."users"."id" from "public"."users"',
    );
    expect(inLibrarySchema(plain.withPlugin(new CamelCasePlugin())).selectFrom('users').select('displayName' as never).compile().sql).toBe(
      'select "display_name" from "public"."users"',
    );
  });

  it("keeps the library's schema over a withSchema of another copy of Kysely (not an instance of this copy's WithSchemaPlugin)", () => {
    // A CommonJS service's own Kysely beside the ES module one: its WithSchemaPlugin is another class.
    const elsewhere = new WithSchemaPlugin('elsewhere');
    const otherCopys: KyselyPlugin = {
      transformQuery: (args) => elsewhere.transformQuery(args),
      transformResult: (args) => elsewhere.transformResult(args),
    };
    expect(otherCopys).not.toBeInstanceOf(WithSchemaPlugin);
    expect(inLibrarySchema(plain.withPlugin(otherCopys)).selectFrom('users').select('users.id').compile().sql).toBe(
      'select "public"."users"."id" from "public"."users"',
    );
  });
});
