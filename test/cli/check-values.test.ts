import { beforeAll, describe, expect, it } from 'vitest';
import { checkValues, loadCheckParser } from '../../src/cli/dev/check-values.js';

beforeAll(loadCheckParser);

// The expressions as PostgreSQL prints them back (pg_get_expr), which is what codegen reads.
describe('reading a CHECK as a list of values', () => {
  it('reads col IN (…) as PostgreSQL normalizes it: col = ANY (ARRAY[…])', () => {
    expect(checkValues("(status = ANY (ARRAY['pending'::text, 'approved'::text, 'rejected'::text]))", 'status')).toEqual({
      kind: 'values',
      values: ['pending', 'approved', 'rejected'],
    });
  });

  it("reads a varchar column's list, which PostgreSQL prints with casts to text", () => {
    expect(checkValues("((kind)::text = ANY ((ARRAY['a'::character varying, 'b'::character varying])::text[]))", 'kind')).toEqual({
      kind: 'values',
      values: ['a', 'b'],
    });
  });

  it('reads a single value, ORs of values and an OR IS NULL branch', () => {
    expect(checkValues("(theme = 'light'::text)", 'theme')).toEqual({ kind: 'values', values: ['light'] });
    expect(checkValues("((theme = 'light'::text) OR ('dark'::text = theme) OR (theme IS NULL))", 'theme')).toEqual({
      kind: 'values',
      values: ['light', 'dark'],
    });
  });

  it('keeps quotes, backslashes and the empty string as they are', () => {
    expect(checkValues("(s = ANY (ARRAY['it''s'::text, 'a\\b'::text, ''::text]))", 's')).toEqual({
      kind: 'values',
      values: ["it's", 'a\\b', ''],
    });
  });

  it('does not read a list combined with anything else, a NULL in the list, NOT IN, or a function of the column', () => {
    for (const expression of [
      "((status = ANY (ARRAY['a'::text, 'b'::text])) AND (length(status) < 5))",
      "(status = ANY (ARRAY['a'::text, NULL::text]))",
      "(NOT (status = ANY (ARRAY['a'::text])))",
      "(lower(status) = ANY (ARRAY['a'::text]))",
      "((status = 'a'::text) OR (other = 'b'::text))",
      // NOT IN, as PostgreSQL prints it.
      "(status <> ALL (ARRAY['a'::text]))",
      // Casts that let more values through than the list says: a length cuts them short,
      // char compares without trailing spaces.
      "(((status)::character varying(3))::text = ANY ((ARRAY['abc'::character varying])::text[]))",
      "((status)::bpchar = ANY (ARRAY['a'::bpchar, 'b'::bpchar]))",
    ]) {
      expect(checkValues(expression, 'status'), expression).toEqual({ kind: 'not-understood' });
    }
  });

  it('has nothing to say about a CHECK that tests no value: lengths, patterns, <>', () => {
    for (const [expression, column] of [
      ["((length(email) <= 254) AND (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'::text))", 'email'],
      ["((btrim(display_name) <> ''::text) AND (length(display_name) <= 100))", 'display_name'],
      ['(length(notes) <= 2000)', 'notes'],
    ]) {
      expect(checkValues(expression!, column!), expression).toEqual({ kind: 'other' });
    }
  });
});
