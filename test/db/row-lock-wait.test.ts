import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitedForRowLock } from '../../src/db/row-lock-wait.js';

// The server words the context of a row wait in the language of its lc_messages: the reader
// must know it in every translation Debian's PostgreSQL 15 ships (CI installs it), and must
// not take a statement's own text, which other context lines quote, for one.
const localeDir = '/usr/share/locale';
const catalogs = readdirSync(localeDir)
  .map((language) => ({ language, file: path.join(localeDir, language, 'LC_MESSAGES', 'postgres-15.mo') }))
  .filter(({ file }) => existsSync(file));

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
  it('finds the catalogues of Debian’s PostgreSQL 15', () => {
    expect(catalogs.map(({ language }) => language)).toEqual(expect.arrayContaining(['de', 'fr', 'ja', 'ko', 'zh_CN']));
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
  });

  it('reads nothing into an error without a context, or with a context of another kind', () => {
    expect(waitedForRowLock(new Error('x'))).toBe(false);
    expect(waitedForRowLock(null)).toBe(false);
    expect(waitedForRowLock({ where: 'COPY users, line 3, column id: "1,2"' })).toBe(false);
    expect(waitedForRowLock({ where: 'PL/pgSQL function f(numeric) line 3 at RAISE' })).toBe(false);
  });
});
