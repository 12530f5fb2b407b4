import { describe, expect, it } from 'vitest';
import { isLocalDatabaseUrl } from '../../src/provisioning/database-admin.js';

describe('isLocalDatabaseUrl', () => {
  it.each([
    'postgresql://u:p@127.0.0.1:5432/db',
    'postgresql://u:p@localhost/db',
    'postgresql://u:p@[::1]/db',
    'postgresql:///db',
    'postgresql:///db?host=/var/run/postgresql',
  ])('treats %s as local', (url) => {
    expect(isLocalDatabaseUrl(url)).toBe(true);
  });

  it.each([
    'postgresql://u:p@db.example.com/db',
    'postgresql://u:p@10.0.0.5/db',
    // libpq and pg let ?host= override the URL's host: the guard must not be fooled by it.
    'postgresql:///db?host=prod.example.com',
    'postgresql://u:p@127.0.0.1/db?host=prod.example.com',
    'postgresql://u:p@127.0.0.1/db?hostaddr=192.0.2.10',
    'postgresql://u:p@127.0.0.1/db?host=localhost,prod.example.com',
  ])('treats %s as non-local', (url) => {
    expect(isLocalDatabaseUrl(url)).toBe(false);
  });
});
