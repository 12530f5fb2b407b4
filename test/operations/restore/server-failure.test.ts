import { describe, expect, it } from 'vitest';
import { serverFailure } from '../../../src/operations/restore/server-failure.js';

// As pg hands a server's error over: its fields, `severity` among them.
const fromServer = (code: string, message: string) => Object.assign(new Error(message), { severity: 'ERROR', code });
const row = '{"email":"kenn@example.org","password_hash":"$argon2id$v=19$c2FsdA"}';

// A data exception quotes the row's value back: in a restore that is the backup's data, which
// a message must not show, in whatever language the server writes its messages.
describe("a restore's account of a server error", () => {
  it.each([
    ['English', `invalid input syntax for type timestamp with time zone: "${row}"`, 'invalid input syntax for type timestamp with time zone: "(value withheld)"'],
    ['German', `ungültige Eingabesyntax für Typ timestamp with time zone: »${row}«`, 'ungültige Eingabesyntax für Typ timestamp with time zone: "(value withheld)"'],
    ['French', `syntaxe en entrée invalide pour le type timestamp with time zone : « ${row} »`, 'syntaxe en entrée invalide pour le type timestamp with time zone : "(value withheld)"'],
    ['Japanese', `timestamp with time zone型の入力構文が不正です：「${row}」`, 'timestamp with time zone型の入力構文が不正です: "(value withheld)"'],
    ['English, the value first', `value "${row}" is out of range for type integer`, 'value "(value withheld)"'],
  ])('withholds the value a data exception quotes back (%s), quotes of its own included', (_language, message, said) => {
    const text = serverFailure(fromServer('22007', message));
    expect(text).toBe(`ERROR: ${said} (SQLSTATE 22007)`);
    expect(text).not.toContain('kenn@example.org');
    expect(text).not.toContain('argon2id');
  });

  it('keeps the message of an error of another class, and of a data exception that quotes nothing', () => {
    expect(serverFailure(fromServer('42P01', 'relation "public.notes" does not exist'))).toBe('ERROR: relation "public.notes" does not exist (SQLSTATE 42P01)');
    expect(serverFailure(fromServer('22001', 'value too long for type character varying(10)'))).toBe(
      'ERROR: value too long for type character varying(10) (SQLSTATE 22001)',
    );
  });
});
