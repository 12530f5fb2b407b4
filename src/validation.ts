import { ValidationError } from './errors.js';

/**
 * Input checks that run before any query, so bad input never reaches the database and the
 * caller learns which field was wrong. Each returns the value in the form the queries use
 * (trimmed, lower-cased where that is the canonical form). The schema enforces the same
 * rules again with CHECK constraints.
 */

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Deliberately loose (one @, no spaces, a dot in the domain): the only real check of an
// address is a mail that arrives.
const emailPattern = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const slugPattern = /^[a-z0-9]+(-[a-z0-9]+)*$/;

export const limits = {
  emailLength: 254,
  displayNameLength: 100,
  slugLength: 50,
  passwordHashLength: 512,
  phraseLength: 500,
  reasonLength: 500,
  notesLength: 2000,
  searchLength: 200,
  pageSize: 100,
} as const;

/** A UUID in canonical 8-4-4-4-12 form, lower-cased. @example requireUuid('userId', id) */
export function requireUuid(field: string, value: unknown): string {
  if (typeof value !== 'string' || !uuidPattern.test(value)) {
    throw new ValidationError(field, 'must be a UUID');
  }
  return value.toLowerCase();
}

// A UTF-16 surrogate without its partner: not a character, so it has no UTF-8 form (pg would
// store U+FFFD instead, and jsonb rejects its \uD800 escape).
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether PostgreSQL can store `text` exactly as given (see {@link requireStorableText}). @example isStorableText(key) */
export function isStorableText(text: string): boolean {
  return !text.includes('\u0000') && !loneSurrogate.test(text);
}

/**
 * Throws unless PostgreSQL can store `text` exactly as given: no NUL character (text and
 * jsonb cannot hold one: SQLSTATE 22021) and no lone surrogate.
 * @example requireStorableText('notes', notes)
 */
export function requireStorableText(field: string, text: string): string {
  if (text.includes('\u0000')) throw new ValidationError(field, 'must not contain a NUL character (\\u0000)');
  if (loneSurrogate.test(text)) throw new ValidationError(field, 'must be well-formed Unicode (a lone surrogate)');
  return text;
}

/**
 * Non-blank text of at most `maxLength` characters, trimmed, that PostgreSQL can store
 * (see {@link requireStorableText}).
 * @example requireText('text', input, limits.phraseLength)
 */
export function requireText(field: string, value: unknown, maxLength: number): string {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be text');
  const trimmed = value.trim();
  if (trimmed === '') throw new ValidationError(field, 'must not be blank');
  // Length in characters (code points), one or two UTF-16 units each: counted only where the
  // units could exceed it, and never past the limit, before anything but trim() reads the text
  // (a request's megabytes were scanned and copied into an array before they were refused).
  // What trim() takes away is neither NUL nor a surrogate.
  if (trimmed.length > maxLength && (trimmed.length > 2 * maxLength || moreCharactersThan(trimmed, maxLength))) {
    throw new ValidationError(field, `must be at most ${maxLength} characters`);
  }
  return requireStorableText(field, trimmed);
}

function moreCharactersThan(text: string, count: number): boolean {
  let seen = 0;
  for (const _character of text) if (++seen > count) return true;
  return false;
}

/**
 * Like {@link requireText}, but `null`, `undefined` and blank text mean "none" (`null`): for
 * optional free text such as notes and search terms.
 *
 * @example textOrNull('notes', '  ', 1000) // null
 */
export function textOrNull(field: string, value: unknown, maxLength: number): string | null {
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) return null;
  return requireText(field, value, maxLength);
}

/** Like {@link requireText}, but `null`/`undefined` pass through as `null`. */
export function optionalText(field: string, value: unknown, maxLength: number): string | null {
  return value === undefined || value === null ? null : requireText(field, value, maxLength);
}

/** An email address, trimmed; its case is kept for display, uniqueness ignores it. @example requireEmail(input.email) */
export function requireEmail(value: unknown): string {
  const email = requireText('email', value, limits.emailLength);
  if (!emailPattern.test(email)) throw new ValidationError('email', 'must be an email address');
  return email;
}

/** A URL slug: lower-case letters and digits in dash-separated groups. @example requireSlug('kenn-w') */
export function requireSlug(value: unknown): string {
  const slug = requireText('slug', value, limits.slugLength);
  if (!slugPattern.test(slug)) {
    throw new ValidationError('slug', 'must be lower-case letters and digits separated by single dashes');
  }
  return slug;
}

/** A page size from 1 to 100 (default 20). @example requireLimit(options.limit) */
export function requireLimit(value: unknown, fallback = 20): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > limits.pageSize) {
    throw new ValidationError('limit', `must be a whole number from 1 to ${limits.pageSize}`);
  }
  return value as number;
}

/**
 * A row offset of 0 or more (default 0). Safe integers only: PostgreSQL's OFFSET is a bigint,
 * and pg sends `1e21` as text that is no integer at all, while `2**63` overflows it.
 * @example requireOffset(options.offset)
 */
export function requireOffset(value: unknown): number {
  if (value === undefined) return 0;
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new ValidationError('offset', `must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}`);
  }
  return value as number;
}

/**
 * A page's `limit` and `offset`, checked (see {@link requireLimit}, {@link requireOffset}).
 * @example const { limit, offset } = requirePage(options)
 */
export function requirePage(options: { limit?: unknown; offset?: unknown }, fallbackLimit = 20): { limit: number; offset: number } {
  return { limit: requireLimit(options.limit, fallbackLimit), offset: requireOffset(options.offset) };
}

// timestamptz runs from 4714-11-24 00:00 UTC BC (Julian day 0; year -4713 in JavaScript's
// proleptic Gregorian calendar) to 294276 AD. JavaScript's own dates end in 275760 AD, so only
// the lower bound can be crossed.
const earliestTimestamp = Date.UTC(-4713, 10, 24);

/**
 * A valid `Date` within PostgreSQL's `timestamptz` range (4713 BC to 294276 AD).
 * @example requireDate('resetAt', input.resetAt)
 */
export function requireDate(field: string, value: unknown): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new ValidationError(field, 'must be a valid Date');
  if (value.getTime() < earliestTimestamp) {
    throw new ValidationError(field, 'must lie between 4713 BC and 294276 AD (the range of timestamptz)');
  }
  return value;
}

/**
 * The options object of a call: omitted (`undefined`) means none; anything else must be an
 * object, so `null` or a string is a `ValidationError` rather than a `TypeError`.
 * @example const { limit, offset } = requirePage(requireOptions('options', options))
 */
export function requireOptions<T extends object>(field: string, value: T | undefined | null): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, 'must be an object or omitted');
  }
  return value;
}

/**
 * A required input object (a new row, a set of changes, a reference): `null`, `undefined` or a
 * non-object is a `ValidationError` naming the argument.
 * @example const input = requireInput('input', newUser)
 */
export function requireInput<T extends object>(field: string, value: T | undefined | null): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, 'must be an object');
  }
  return value;
}

/** A whole number of seconds within the given range. @example requireSeconds('reuseGraceSeconds', 10, 0) */
export function requireSeconds(field: string, value: unknown, min: number, max = 10 * 365 * 24 * 3600): number {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    throw new ValidationError(field, `must be a whole number of seconds from ${min} to ${max}`);
  }
  return value as number;
}

/** A boolean. @example requireBoolean('active', active) */
export function requireBoolean(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new ValidationError(field, 'must be true or false');
  return value;
}

/**
 * Escapes `%`, `_` and `\` so user text matches literally inside a LIKE/ILIKE pattern
 * (PostgreSQL's default escape character is the backslash).
 *
 * @example `%${escapeLikePattern('100%_done')}%` // '%100\\%\\_done%'
 */
export function escapeLikePattern(text: string): string {
  return text.replace(/[\\%_]/g, (ch) => `\\${ch}`);
}
