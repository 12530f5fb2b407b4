import { describe, expect, it } from 'vitest';
import * as api from '../src/index.js';

// The names services code against: renaming or dropping one is a breaking change.
const contract = {
  users: ['create', 'findById', 'findByEmail', 'findBySlug', 'updateProfile', 'updatePassword', 'setActive', 'isSlugAvailable', 'getRoles', 'grantRole', 'revokeRole'],
  refreshTokens: ['issue', 'rotate', 'revoke', 'revokeAllForUser', 'listSessions', 'purgeExpired', 'configure'],
  incidentTimers: ['create', 'listForUser', 'latestPublicBySlug', 'update', 'remove'],
  phrases: ['randomForUser', 'randomForSlug', 'listForUser', 'exclude', 'include', 'listExcluded', 'create', 'update', 'list', 'count'],
  phraseSuggestions: ['submit', 'listForUser', 'listPending', 'approve', 'reject', 'countPending'],
} as const;

describe('the package entry', () => {
  it.each(Object.entries(contract))('exports the %s namespace with its functions', (namespace, functions) => {
    const exported = (api as unknown as Record<string, Record<string, unknown>>)[namespace]!;
    for (const name of functions) expect(typeof exported[name], `${namespace}.${name}`).toBe('function');
  });

  it('exports the pool, the migrator and the typed errors', () => {
    for (const name of ['createDb', 'poolOf', 'loadDbConfig', 'migrate', 'migrateDown', 'migrationStatus', 'mapDatabaseError', 'isRetryable', 'withSavepoint', 'withTimeouts']) {
      expect(typeof (api as Record<string, unknown>)[name], name).toBe('function');
    }
    for (const error of [api.NotFoundError, api.UniqueViolationError, api.ForbiddenError, api.ConflictError, api.TokenReusedError, api.PoolTimeoutError, api.PoolClosedError, api.PoolNotReadyError, api.ConnectionError, api.DeadlockError, api.SerializationError, api.LockNotAvailableError, api.QueryCanceledError, api.DataExceptionError, api.TransactionAbortedError, api.DatabaseError, api.MigrationBlockedError, api.MigrationLockLostError]) {
      expect(error.prototype).toBeInstanceOf(api.DbError);
    }
  });
});
