import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitedForRowLock } from '../../src/db/row-lock-wait.js';
import { toolsAvailable } from '../support/required-tools.js';

// The server words the context of a row wait in the language of its lc_messages: the reader
// must know it in every translation Debian's PostgreSQL 15 ships (CI installs it), and must
// not take a statement's own text, which other context lines quote, for one.
const localeDir = '/usr/share/locale';
const catalogs = (existsSync(localeDir) ? readdirSync(localeDir) : [])
  .map((language) => ({ language, file: path.join(localeDir, language, 'LC_MESSAGES', 'postgres-15.mo') }))
  .filter(({ file }) => existsSync(file));
// As the other tests of Debian's PostgreSQL 15: CI installs it and fails without it; elsewhere
// the languages are left out.
const withCatalogs = toolsAvailable([path.join(localeDir, 'fr', 'LC_MESSAGES', 'postgres-15.mo')], "the server's languages (Debian's PostgreSQL 15 catalogues)");

// A GNU gettext catalogue (.mo): its translations by message id.
function translations(file: string): Map<string, string> {
  const mo = readFileSync(file);
  const little = mo.readUInt32LE(0) === 0x950412de;
  const word = (at: number) => (little ? mo.readUInt32LE(at) : mo.readUInt32BE(at));
  const [count, originals, translated] = [word(8), word(12), word(16)];
  const text = (table: number, index: number) => mo.toString('utf8', word(table + index * 8 + 4), word(table + index * 8 + 4) + word(table + index * 8));
  return new Map(Array.from({ length: count }, (_, index) => [text(originals, index), text(translated, index)]));
}

// printf as the server's messages use it, positional (%1$u) or not.
function format(template: string, values: Array<string | number>): string {
  let next = 0;
  return template.replace(/%(?:(\d+)\$)?(?:ll)?[usd]/g, (_, position: string | undefined) => String(values[position ? Number(position) - 1 : next++]));
}

const rowWaits = [
  'while updating tuple (%u,%u) in relation "%s"',
  'while deleting tuple (%u,%u) in relation "%s"',
  'while locking tuple (%u,%u) in relation "%s"',
  'while locking updated version (%u,%u) of tuple in relation "%s"',
  'while inserting index tuple (%u,%u) in relation "%s"',
  'while checking uniqueness of tuple (%u,%u) in relation "%s"',
  'while rechecking updated tuple (%u,%u) in relation "%s"',
  'while checking exclusion constraint on tuple (%u,%u) in relation "%s"',
];

describe('waitedForRowLock', () => {
  it.runIf(withCatalogs)('finds the catalogues of Debian’s PostgreSQL 15', () => {
    expect(catalogs.map(({ language }) => language)).toEqual(expect.arrayContaining(['de', 'fr', 'ja', 'ko', 'zh_CN']));
    // Read right: each row wait is translated there (a miss would test English in its place).
    const french = translations(catalogs.find(({ language }) => language === 'fr')!.file);
    for (const id of rowWaits) expect(french.get(id), id).toMatch(/^lors (de|du) /);
  });

  it.each(catalogs)('knows a row wait in $language, and no statement quoted in a context line', ({ file }) => {
    const catalog = translations(file);
    const say = (id: string, values: Array<string | number>) => format(catalog.get(id) || id, values);
    for (const id of rowWaits) {
      // A relation whose name holds a pair of its own, and a function's line beneath.
      expect(waitedForRowLock({ where: `${say(id, [0, 7, 'users'])}\nPL/pgSQL function f() line 3 at SQL statement` }), say(id, [0, 7, 'users'])).toBe(true);
      expect(waitedForRowLock({ where: say(id, [12, 40, 'pairs(1,2)']) }), say(id, [12, 40, 'pairs(1,2)'])).toBe(true);
    }
    const statement = say('SQL statement "%s"', ['SELECT pg_sleep(5), 1.5::numeric(10,2)']);
    expect(waitedForRowLock({ where: `${statement}\nPL/pgSQL function inline_code_block line 1 at PERFORM` }), statement).toBe(false);
    // Over several lines, the innermost one holds the opening quotation mark only.
    const long = say('SQL statement "%s"', ['SELECT sum(x)::numeric(10,2)\n  FROM generate_series(1, 10) AS x, pg_sleep(2)']);
    expect(waitedForRowLock({ where: `${long}\nPL/pgSQL function f() line 4 at SQL statement` }), long).toBe(false);
  });

  it('reads nothing into an error without a context, or with a context of another kind', () => {
    expect(waitedForRowLock(new Error('x'))).toBe(false);
    expect(waitedForRowLock(null)).toBe(false);
    expect(waitedForRowLock({ where: 'COPY users, line 3, column id: "1,2"' })).toBe(false);
    expect(waitedForRowLock({ where: 'PL/pgSQL function f(numeric) line 3 at RAISE' })).toBe(false);
    // A statement's parameters, which the server quotes where log_parameter_max_length_on_error lets it.
    expect(waitedForRowLock({ where: "unnamed portal with parameters: $1 = '(1,2)', $2 = 'it''s (3,4)...', $3 = NULL" })).toBe(false);
    expect(waitedForRowLock({ where: "while locking tuple (0,1) in relation \"users\"\nunnamed portal with parameters: $1 = 'x'" })).toBe(true);
  });
});
