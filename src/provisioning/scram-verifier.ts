import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

// The SASLprep steps that change a password's bytes (RFC 4013), as PostgreSQL, libpq and the
// pg driver apply them before hashing, so the verifier matches what every client computes.
function saslprep(password: string): string {
  return password
    .replace(/[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g, ' ')
    .replace(/[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, '')
    .normalize('NFKC');
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password
 * (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5803), computed here
 * so that `CREATE ROLE … PASSWORD '<verifier>'` never sends the password itself to the
 * server, where statement logging could record it. PostgreSQL stores such a string as is.
 *
 * @example
 * await client.query(`ALTER ROLE app PASSWORD ${client.escapeLiteral(scramSha256Verifier('s3cret'))}`)
 */
export function scramSha256Verifier(password: string, options: { iterations?: number; salt?: Buffer } = {}): string {
  const iterations = options.iterations ?? 4096;
  const salt = options.salt ?? randomBytes(16);
  const salted = pbkdf2Sync(Buffer.from(saslprep(password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Whether `password` is the one a stored SCRAM-SHA-256 verifier was made from: the verifier
 * is computed again with the stored salt and iteration count and compared in constant time.
 * False for anything else (an md5 hash, no password). This is what lets set-up leave an
 * unchanged password alone: writing it again would draw a new salt, and a PgBouncer
 * `auth_file` holding the old verifier would stop matching.
 *
 * @example
 * scramVerifierMatches('s3cret', rolpassword) // true: nothing to write
 */
export function scramVerifierMatches(password: string, stored: string | null | undefined): boolean {
  const match = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(stored ?? '');
  if (!match) return false;
  const iterations = Number(match[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 10_000_000) return false;
  const computed = Buffer.from(scramSha256Verifier(password, { iterations, salt: Buffer.from(match[2]!, 'base64') }));
  const expected = Buffer.from(stored!);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}
