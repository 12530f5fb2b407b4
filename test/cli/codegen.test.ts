import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateTypes } from '../../src/cli/dev/generate-types.js';
import { ConnectionError } from '../../src/errors.js';
import { withClient } from '../../src/db/with-client.js';
import { migrate } from '../../src/migrations/migrator.js';
import { packageRoot } from '../../src/package-root.js';
import { startFakePostgres } from '../support/fake-postgres.js';
import { createMigrationSandbox, type MigrationSandbox } from '../support/migration-sandbox.js';

// Values made up per run, so that nothing but the live constraint can produce them; one holds
// a quote and a backslash, which both SQL and TypeScript must escape.
const word = () => `v${randomBytes(4).toString('hex')}`;
const themes = [word(), word(), `it's \\ ${word()}`];
const accents = [word(), word()];
const moods = [word(), word()];

const sqlList = (values: string[]) => values.map((value) => `'${value.replace(/'/g, "''")}'`).join(', ');

/** The type of `table.column` in generated source: its string literals, whether it is nullable and Generated, anything else. */
function columnType(source: string, table: string, column: string) {
  const file = ts.createSourceFile('db.ts', source, ts.ScriptTarget.Latest, true);
  const declaration = file.statements.find((node): node is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(node) && node.name.text === table);
  const member = declaration?.members.find((node): node is ts.PropertySignature => ts.isPropertySignature(node) && node.name.getText(file) === column);
  if (member?.type === undefined) throw new Error(`no ${table}.${column} in the generated file`);
  let type = member.type;
  let generated = false;
  if (ts.isTypeReferenceNode(type) && type.typeName.getText(file) === 'Generated') {
    generated = true;
    type = type.typeArguments![0]!;
  }
  const members = ts.isUnionTypeNode(type) ? [...type.types] : [type];
  const values: string[] = [];
  const other: string[] = [];
  let nullable = false;
  for (const node of members) {
    if (ts.isLiteralTypeNode(node) && ts.isStringLiteral(node.literal)) values.push(node.literal.text);
    else if (ts.isLiteralTypeNode(node) && node.literal.kind === ts.SyntaxKind.NullKeyword) nullable = true;
    else other.push(node.getText(file));
  }
  return { generated, nullable, values, other };
}

/** The string literals of `export type Name = …`. */
function aliasValues(source: string, name: string): string[] {
  const file = ts.createSourceFile('db.ts', source, ts.ScriptTarget.Latest, true);
  const alias = file.statements.find((node): node is ts.TypeAliasDeclaration => ts.isTypeAliasDeclaration(node) && node.name.text === name);
  if (alias === undefined) throw new Error(`no type ${name} in the generated file`);
  const members = ts.isUnionTypeNode(alias.type) ? [...alias.type.types] : [alias.type];
  return members.map((node) => (ts.isLiteralTypeNode(node) && ts.isStringLiteral(node.literal) ? node.literal.text : node.getText(file)));
}

describe('npm run codegen on a schema a migration just changed', () => {
  let sandbox: MigrationSandbox;
  let outDir: string;
  let pristine: string;
  let output: string;
  const warnings: string[] = [];

  beforeAll(async () => {
    sandbox = await createMigrationSandbox();
    outDir = await mkdtemp(path.join(os.tmpdir(), 'kw-codegen-'));
    await migrate({ databaseUrl: sandbox.database.url, migrationsDir: sandbox.migrationsDir });
    pristine = await generateTypes({ databaseUrl: sandbox.database.url, outFile: path.join(outDir, 'pristine.ts'), logLevel: 'silent' });
    await writeFile(
      path.join(sandbox.migrationsDir, '20990101000000_add_user_preferences.up.sql'),
      [
        `CREATE TYPE user_mood AS ENUM (${sqlList(moods)});`,
        'ALTER TABLE users',
        `  ADD COLUMN theme text NOT NULL DEFAULT '${themes[0]}' CHECK (theme IN (${sqlList(themes)})),`,
        `  ADD COLUMN accent varchar(40) CHECK (accent IN (${sqlList(accents)})),`,
        '  ADD COLUMN mood user_mood,',
        `  ADD COLUMN shade text CONSTRAINT users_shade_listed_and_short CHECK (shade IN ('a', 'b') AND length(shade) < 5);`,
      ].join('\n'),
    );
    await writeFile(path.join(sandbox.migrationsDir, '20990101000000_add_user_preferences.down.sql'), 'SELECT 1;');
    await migrate({ databaseUrl: sandbox.database.url, migrationsDir: sandbox.migrationsDir });
    output = await generateTypes({
      databaseUrl: sandbox.database.url,
      outFile: path.join(outDir, 'db.ts'),
      logLevel: 'silent',
      warn: (line) => warnings.push(line),
    });
  });
  afterAll(async () => {
    await sandbox?.remove();
    await rm(outDir, { recursive: true, force: true });
  });

  it('types a CHECK-listed text column with a default as Generated<the union of exactly its values>', () => {
    expect(columnType(output, 'Users', 'theme')).toEqual({ generated: true, nullable: false, values: themes, other: [] });
  });

  it('types a nullable varchar column listed by a CHECK as its values or null', () => {
    expect(columnType(output, 'Users', 'accent')).toEqual({ generated: false, nullable: true, values: accents, other: [] });
  });

  it('types a PostgreSQL enum column as the union of the enum labels (kysely-codegen sorts them)', () => {
    expect(columnType(output, 'Users', 'mood')).toEqual({ generated: false, nullable: true, values: [], other: ['UserMood'] });
    expect(aliasValues(output, 'UserMood')).toEqual([...moods].sort());
  });

  it('leaves a column whose CHECK it cannot read as a list as kysely-codegen types it, and says so in one line', () => {
    expect(columnType(output, 'Users', 'shade')).toEqual({ generated: false, nullable: true, values: [], other: ['string'] });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^codegen: a CHECK tests values in a form it does not read, .*: users\.shade \(users_shade_listed_and_short\)$/);
  });

  it('generates the committed generated/db.ts from the repository\'s migrations, unions included', async () => {
    expect(pristine).toBe(await readFile(path.join(packageRoot(), 'generated', 'db.ts'), 'utf8'));
  });

  it("derives the library's own unions and the device info shape from the schema", () => {
    expect(columnType(output, 'PhraseSuggestions', 'status')).toEqual({
      generated: true,
      nullable: false,
      values: ['pending', 'approved', 'rejected'],
      other: [],
    });
    expect(columnType(output, 'RefreshTokens', 'revoked_reason').values).toContain('password_changed');
    expect(columnType(output, 'RefreshTokens', 'device_info')).toEqual({ generated: false, nullable: true, values: [], other: ['DeviceInfo'] });
    expect(output).toContain('import type { DeviceInfo } from "../src/device-info.js";');
  });

  // This file's afterAll drops the database at once: a connection still closing then ended
  // with an error that crashed the test process (see generateTypes).
  it('has closed its connection by the time it returns, or throws, so the database can go at once', async () => {
    // Counted in this process (a socket still closing is counted at once) and on the server.
    const sockets = () => process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length;
    const otherSessions = () =>
      withClient(sandbox.database.url, async (client) => {
        const { rows } = await client.query<{ n: number }>(
          // Client sessions only: an autovacuum worker, which the migration's changes may wake, is the server's.
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        );
        return rows[0]!.n;
      });
    const before = sockets();
    await generateTypes({ databaseUrl: sandbox.database.url, outFile: path.join(outDir, 'again.ts'), logLevel: 'silent', warn: () => {} });
    expect(sockets()).toBe(before);
    expect(await otherSessions()).toBe(0);
    await writeFile(path.join(outDir, 'stale.ts'), 'stale');
    const stale = { databaseUrl: sandbox.database.url, outFile: path.join(outDir, 'stale.ts'), verify: true, logLevel: 'silent' as const, warn: () => {} };
    await expect(generateTypes(stale)).rejects.toThrow(/not up-to-date/);
    expect(sockets()).toBe(before);
    expect(await otherSessions()).toBe(0);
  });

  it('fails --verify (codegen:check) once a migration adds a value to a listed column', async () => {
    const outFile = path.join(outDir, 'db.ts');
    await expect(generateTypes({ databaseUrl: sandbox.database.url, outFile, verify: true, logLevel: 'silent', warn: () => {} })).resolves.toBe(output);
    const added = word();
    await writeFile(
      path.join(sandbox.migrationsDir, '20990101000001_widen_theme.up.sql'),
      `ALTER TABLE users DROP CONSTRAINT users_theme_check, ADD CONSTRAINT users_theme_check CHECK (theme IN (${sqlList([...themes, added])}));`,
    );
    await writeFile(path.join(sandbox.migrationsDir, '20990101000001_widen_theme.down.sql'), 'SELECT 1;');
    await migrate({ databaseUrl: sandbox.database.url, migrationsDir: sandbox.migrationsDir });
    const said: string[] = [];
    await expect(generateTypes({ databaseUrl: sandbox.database.url, outFile, verify: true, logLevel: 'silent', warn: (line) => said.push(line) })).rejects.toThrow(
      `Generated types are not up-to-date with the live schema: run npm run codegen, and commit ${outFile}`,
    );
    expect(await readFile(outFile, 'utf8')).toBe(output);
    // From the file ('-') to what the schema generates ('+'): kysely-codegen's own check showed
    // the value the migration added on a '-' line, as if removed.
    const diff = said.find((line) => line.startsWith(`codegen: ${outFile} ('-') differs from what the live schema generates ('+'):\n`)) ?? '';
    const changed = diff.split('\n').filter((line) => /^[-+]\s+theme:/.test(line));
    expect(changed).toHaveLength(2);
    expect(changed[0]).toMatch(/^-/);
    expect(changed[0]).not.toContain(added);
    expect(changed[1]).toMatch(/^\+/);
    expect(changed[1]).toContain(added);
  });

  // kysely-codegen names a table device_info's interface DeviceInfo too, and imported the
  // module's as DeviceInfo2: refresh_tokens.device_info was typed as that table's rows, and
  // codegen said nothing.
  it("refuses a table whose interface takes the name of a json column's module type, writing nothing", async () => {
    const clashing = await createMigrationSandbox();
    try {
      await migrate({ databaseUrl: clashing.database.url, migrationsDir: clashing.migrationsDir });
      await withClient(clashing.database.url, (client) => client.query('CREATE TABLE device_info (id bigint PRIMARY KEY, label text NOT NULL)'));
      const outFile = path.join(outDir, 'clashing.ts');

      const refused = generateTypes({ databaseUrl: clashing.database.url, outFile, logLevel: 'silent', warn: () => {} });

      await expect(refused).rejects.toThrow(
        'codegen: the schema has a table or type that kysely-codegen also names DeviceInfo, the type of a json column (from ../src/device-info.js): ' +
          'the column would be typed as its rows. Rename the table or type; nothing was written',
      );
      await expect(readFile(outFile, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await clashing.remove();
    }
  });

  // kysely-codegen writes a module's type imported under another name (`path#Name`) as
  // `import type { Name as Other }`: no clash, and not refused as one.
  it("types a json column with a module's type imported under another name", async () => {
    const outFile = path.join(outDir, 'renamed.ts');

    const source = await generateTypes({
      databaseUrl: sandbox.database.url,
      outFile,
      logLevel: 'silent',
      warn: () => {},
      shapes: { 'public.refresh_tokens.device_info': { type: 'Device', from: '../src/device-info.js#DeviceInfo' } },
    });

    expect(source).toContain('import type { DeviceInfo as Device } from "../src/device-info.js";');
    expect(columnType(source, 'RefreshTokens', 'device_info')).toMatchObject({ nullable: true, other: ['Device'] });
  });

  // A union narrower than what the table reads back would make its real values type errors.
  it('narrows no column whose list binds less than it says, types an array of an enum as the text pg returns, and reads values whatever the standard strings setting', async () => {
    const slash = `a\\${word()}`;
    await withClient(sandbox.database.url, (client) =>
      client.query(
        "CREATE COLLATION kw_case_blind (provider = icu, locale = 'und-u-ks-level2', deterministic = false); " +
          "CREATE TABLE blind (theme text COLLATE kw_case_blind CHECK (theme IN ('light', 'dark'))); " +
          "CREATE TABLE parent (kind text CHECK (kind IN ('a', 'b')) NO INHERIT); CREATE TABLE child () INHERITS (parent); " +
          "CREATE TABLE cast_lists (short text CHECK (short::varchar(3) IN ('abc')), padded text CHECK (padded::char(1) IN ('a')), " +
          "  excluded text CHECK (excluded NOT IN ('x', 'y')), " +
          `  slashed text CHECK (slashed IN (${sqlList([slash])}))); ` +
          "CREATE TYPE kw_color AS ENUM ('red', 'blue'); CREATE TABLE palette (colors kw_color[] NOT NULL); " +
          "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET standard_conforming_strings = off', current_database()); END $$",
      ),
    );
    try {
      const lines: string[] = [];
      const source = await generateTypes({ databaseUrl: sandbox.database.url, outFile: path.join(outDir, 'binding.ts'), logLevel: 'silent', warn: (line) => lines.push(line) });

      const plain = { generated: false, nullable: true, values: [], other: ['string'] };
      for (const [table, column] of [['Blind', 'theme'], ['Parent', 'kind'], ['CastLists', 'short'], ['CastLists', 'padded'], ['CastLists', 'excluded']] as const) {
        expect(columnType(source, table, column), `${table}.${column}`).toEqual(plain);
      }
      expect(columnType(source, 'CastLists', 'slashed')).toEqual({ generated: false, nullable: true, values: [slash], other: [] });
      expect(columnType(source, 'Palette', 'colors')).toEqual({ generated: false, nullable: false, values: [], other: ['string'] });
      expect(lines).toEqual([
        // users.shade is the migration's, above.
        'codegen: 4 CHECKs test values in a form it does not read, so they narrow no type: cast_lists.short (cast_lists_short_check), ' +
          'cast_lists.padded (cast_lists_padded_check), cast_lists.excluded (cast_lists_excluded_check), users.shade (users_shade_listed_and_short)',
        'codegen: 2 CHECKs bind less than their lists (a column of a nondeterministic collation, NO INHERIT on a table with children, NOT ENFORCED, or a foreign table among the table\'s children), ' +
          'so they narrow no type: blind.theme (blind_theme_check), parent.kind (parent_kind_check)',
        "codegen: pg returns an array of an enum as its text ('{a,b}'), so that column is typed string (select it as col::text[] for an array): palette.colors (public.kw_color[])",
      ]);
      // What pg really returns for it.
      const colors = await withClient(sandbox.database.url, async (client) => (await client.query("SELECT ARRAY['red', 'blue']::kw_color[] AS colors")).rows[0].colors);
      expect(colors).toBe('{red,blue}');
    } finally {
      await withClient(sandbox.database.url, (client) =>
        client.query(
          "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET standard_conforming_strings', current_database()); END $$; " +
            'DROP TABLE blind, child, parent, cast_lists, palette; DROP TYPE kw_color; DROP COLLATION kw_case_blind',
        ),
      );
    }
  });

  it('leaves a column listed by a CHECK that is NOT VALID yet as it was, saying so, and narrows it once validated', async () => {
    // The rows already there may hold other values until VALIDATE CONSTRAINT has checked them.
    await withClient(sandbox.database.url, (client) =>
      client.query(
        "ALTER TABLE users ADD COLUMN tone text; UPDATE users SET tone = 'legacy'; " +
          "ALTER TABLE users ADD CONSTRAINT users_tone_listed CHECK (tone IN ('warm', 'cool')) NOT VALID",
      ),
    );
    const lines: string[] = [];
    const unvalidated = await generateTypes({ databaseUrl: sandbox.database.url, outFile: path.join(outDir, 'not-valid.ts'), logLevel: 'silent', warn: (line) => lines.push(line) });
    expect(columnType(unvalidated, 'Users', 'tone')).toEqual({ generated: false, nullable: true, values: [], other: ['string'] });
    expect(lines).toContainEqual(
      'codegen: a CHECK is NOT VALID (rows from before it may hold other values), so it narrows no type until VALIDATE CONSTRAINT: users.tone (users_tone_listed)',
    );

    await withClient(sandbox.database.url, (client) => client.query("UPDATE users SET tone = 'warm'; ALTER TABLE users VALIDATE CONSTRAINT users_tone_listed"));
    const validated = await generateTypes({ databaseUrl: sandbox.database.url, outFile: path.join(outDir, 'validated.ts'), logLevel: 'silent', warn: () => {} });
    expect(columnType(validated, 'Users', 'tone')).toEqual({ generated: false, nullable: true, values: ['warm', 'cool'], other: [] });
  });
});

// In the same file as codegen's tests, so the TypeScript compiler (which kysely-codegen loads
// too) is imported once.
const root = packageRoot();

// Each line ends with what the compiler must say about it: `ok`, or `error` (then a type error
// on that line, and only there). Misspelt values sit next to right ones in the same position.
const fixture = `
import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import type * as phraseSuggestions from '../../src/queries/phrase-suggestions.js';
import type * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import type { CamelCasedDB } from '../../src/db/camel-cased-db.js';
import { withSavepoint } from '../../src/db/with-savepoint.js';
declare const db: Kysely<DB>;
db.selectFrom('phrase_suggestions').selectAll().where('status', '=', 'pending'); // ok
db.selectFrom('phrase_suggestions').selectAll().where('status', '=', 'pendng'); // error
db.updateTable('phrase_suggestions').set({ status: 'rejected' }); // ok
db.updateTable('phrase_suggestions').set({ status: 'rejectd' }); // error
db.updateTable('refresh_tokens').set({ revoked_reason: 'password_changed' }); // ok
db.updateTable('refresh_tokens').set({ revoked_reason: 'password_change' }); // error
db.updateTable('refresh_tokens').set({ revoked_reason: null }); // ok
export const approved: phraseSuggestions.SuggestionStatus = 'approved'; // ok
export const aproved: phraseSuggestions.SuggestionStatus = 'aproved'; // error
export const reuse: refreshTokens.RevokedReason = 'reuse'; // ok
export const reused: refreshTokens.RevokedReason = 'reused'; // error
export const device: refreshTokens.DeviceInfo = { userAgent: 'x', screen: { width: 1 } }; // ok
export const notAnObject: refreshTokens.DeviceInfo = ['x']; // error
// A CamelCasePlugin service's transaction goes through withSavepoint to the query functions.
declare const camelDb: Kysely<CamelCasedDB>;
export const inSavepoint = camelDb.transaction().execute((trx) => withSavepoint(trx, (sp) => users.findByEmail(sp, 'a@example.org'))); // ok
export async function status(id: string) {
  const row = await db.selectFrom('phrase_suggestions').select('status').where('id', '=', id).executeTakeFirstOrThrow();
  const known: 'pending' | 'approved' | 'rejected' = row.status; // ok
  const tokens = await db.selectFrom('refresh_tokens').select('device_info').executeTakeFirstOrThrow();
  const info: refreshTokens.DeviceInfo | null = tokens.device_info; // ok
  return [known, info];
}
`;

// For each fixture, the lines where the compiler finds an error, and those marked `// error`:
// one program for all of them, which type-checks the sources they import once.
function typeErrors(fixtures: Record<string, string>): Record<string, { found: Set<number>; expected: number[] }> {
  const files = new Map(Object.entries(fixtures).map(([name, text]) => [path.join(root, 'test', 'cli', name), text]));
  const { config } = ts.readConfigFile(path.join(root, 'tsconfig.json'), ts.sys.readFile);
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, root);
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (file) => files.get(file) ?? readFile(file);
  host.fileExists = (file) => files.has(file) || ts.sys.fileExists(file);
  host.getSourceFile = (file, language, ...rest) =>
    files.has(file) ? ts.createSourceFile(file, files.get(file)!, language, true) : getSourceFile(file, language, ...rest);
  const program = ts.createProgram([...files.keys()], { ...options, noEmit: true }, host);
  return Object.fromEntries(
    [...files].map(([fileName, text]) => {
      const source = program.getSourceFile(fileName)!;
      // Only the fixtures are checked (the rest of the program is typecheck's job), which is quick.
      const errorLines = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)].map(
        (diagnostic) => source.getLineAndCharacterOfPosition(diagnostic.start!).line,
      );
      const expected = text.split('\n').flatMap((line, index) => (line.endsWith('// error') ? [index] : []));
      return [path.basename(fileName), { found: new Set(errorLines), expected }];
    }),
  );
}

// No wait without a bound, in the development loop too: against a server that let the login
// in and then never answered, codegen waited 680 s without a word; behind a lock on the
// migrations record (a prepared transaction's), 146 s.
describe('npm run codegen against a server that does not answer, or a lock held', () => {
  it('gives up on a server that stops answering after the login, within a round trip\'s deadline', { timeout: 30_000 }, async () => {
    const server = await startFakePostgres('login, then nothing');
    try {
      const outFile = path.join(os.tmpdir(), `kw-codegen-silent-${randomBytes(4).toString('hex')}.ts`);
      const error = await generateTypes({ databaseUrl: `postgresql://u:p@127.0.0.1:${server.port}/db`, outFile, logLevel: 'silent', warn: () => {} }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
      expect(error).toMatchObject({ reason: 'deadline' });
    } finally {
      await server.close();
    }
  });

  it('fails as a lock wait, within its lock_timeout, while another session holds the migrations record', { timeout: 30_000 }, async () => {
    const sandbox = await createMigrationSandbox();
    try {
      await migrate({ databaseUrl: sandbox.database.url, migrationsDir: sandbox.migrationsDir });
      const error = await withClient(sandbox.database.url, async (holder) => {
        await holder.query('BEGIN; LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE');
        const outFile = path.join(os.tmpdir(), `kw-codegen-locked-${randomBytes(4).toString('hex')}.ts`);
        return generateTypes({ databaseUrl: sandbox.database.url, outFile, logLevel: 'silent', warn: () => {} }).catch((e: unknown) => e);
      });
      expect(error).toMatchObject({ code: '55P03' });
    } finally {
      await sandbox.remove();
    }
  });
});

// A service whose own Kysely knows tables of its own beside ours passes it, and its
// transactions, to the query functions and withSavepoint as it is; one that lacks ours does not.
const serviceTablesFixture = `
import type { ControlledTransaction, Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import type { CamelCasedDB } from '../../src/db/camel-cased-db.js';
import { withSavepoint } from '../../src/db/with-savepoint.js';
import { withTimeouts } from '../../src/db/with-timeouts.js';
import * as users from '../../src/queries/users.js';
declare const serviceDb: Kysely<DB & { audit_log: { id: string; line: string } }>;
declare const camelServiceDb: Kysely<CamelCasedDB & { auditLog: { id: string } }>;
declare const unrelated: Kysely<{ audit_log: { id: string } }>;
export const own = users.findById(serviceDb, 'id'); // ok
export const camelOwn = users.findById(camelServiceDb, 'id'); // ok
export const inTransaction = serviceDb.transaction().execute((trx) => users.findById(trx, 'id')); // ok
export const inSavepoint = serviceDb.transaction().execute((trx) => withSavepoint(trx, (sp) => users.findById(sp, 'id'))); // ok
export const alsoTheirs = serviceDb.transaction().execute((trx) => withSavepoint(trx, (sp) => sp.selectFrom('audit_log').selectAll().execute())); // ok
export const camelInSavepoint = camelServiceDb.transaction().execute((trx) => withSavepoint(trx, (sp) => users.findById(sp, 'id'))); // ok
export const notOurs = users.findById(unrelated, 'id'); // error
// Controlled transactions (startTransaction) and their savepoints, as the callback form's:
// TypeScript inferred no D from them against Kysely<D> | Transaction<D> and fell back to DB.
declare const controlled: ControlledTransaction<DB & { audit_log: { id: string; line: string } }>;
declare const camelControlled: ControlledTransaction<CamelCasedDB & { auditLog: { id: string } }>;
declare const savepointOf: ControlledTransaction<DB & { audit_log: { id: string; line: string } }, ['a']>;
export const controlledOwn = users.findById(controlled, 'id'); // ok
export const camelControlledOwn = users.findById(camelControlled, 'id'); // ok
export const savepointOwn = users.updateProfile(savepointOf, 'id', { displayName: 'x' }); // ok
export const controlledSavepoint = withSavepoint(controlled, (sp) => users.findById(sp, 'id')); // ok
export const controlledTheirs = withSavepoint(controlled, (sp) => sp.selectFrom('audit_log').selectAll().execute()); // ok
export const controlledTimeouts = withTimeouts(controlled, { statementTimeout: '2s' }, (trx) => users.findById(trx, 'id')); // ok
export const camelControlledTimeouts = withTimeouts(camelControlled, { statementTimeout: '2s' }, (trx) => trx.selectFrom('auditLog').selectAll().execute()); // ok
`;

describe('the generated types', () => {
  let checked: ReturnType<typeof typeErrors> | undefined;
  const errorsOf = (name: string) =>
    (checked ??= typeErrors({ 'constrained-values.fixture.ts': fixture, 'service-tables.fixture.ts': serviceTablesFixture }))[name]!;

  // The first test builds the TypeScript program over the fixtures, in this worker, while the
  // other files run: 22-29 s on a 2-core machine under the whole suite, and once past vitest's
  // 30 s in CI. A bound still, not a measure.
  it('make a misspelt CHECK value a type error, and a right one not', { timeout: 120_000 }, () => {
    const { found, expected } = errorsOf('constrained-values.fixture.ts');
    expect(found).toEqual(new Set(expected));
    expect(expected).toHaveLength(6);
  });

  it("take a service's own Kysely with tables of its own beside ours, and refuse one without ours", () => {
    const { found, expected } = errorsOf('service-tables.fixture.ts');
    expect(found).toEqual(new Set(expected));
    expect(expected).toHaveLength(1);
  });
});
