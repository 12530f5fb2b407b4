import type { BenchContext } from './bench-context.js';
import { pick } from './bench-context.js';
import { incidentTimers, users } from '../src/index.js';

/** One hot path, done by the library and by hand-written SQL on raw `pg`. */
export interface BenchOperation {
  name: string;
  library: (ctx: BenchContext, worker: number) => Promise<unknown>;
  raw: (ctx: BenchContext, worker: number) => Promise<unknown>;
}

const userColumnsSql = `id, email, display_name AS "displayName", slug, active, created_at AS "createdAt", updated_at AS "updatedAt"`;

export function benchOperations(): BenchOperation[] {
  return [
    {
      name: 'users.findByEmail',
      library: (ctx) => users.findByEmail(ctx.db, pick(ctx.emails)),
      raw: async (ctx) =>
        (
          await ctx.pool.query(
            `SELECT ${userColumnsSql}, password_hash AS "passwordHash" FROM users WHERE lower(email) = lower($1)`,
            [pick(ctx.emails)],
          )
        ).rows[0] ?? null,
    },
    {
      name: 'incidentTimers.latestPublicBySlug',
      library: (ctx) => incidentTimers.latestPublicBySlug(ctx.db, pick(ctx.slugs)),
      raw: async (ctx) => {
        const { rows } = await ctx.pool.query(
          `SELECT t.id, t.user_id AS "userId", t.reset_at AS "resetAt", t.notes, t.created_at AS "createdAt",
                  t.updated_at AS "updatedAt", u.display_name AS "displayName"
           FROM users u JOIN incident_timers t ON t.user_id = u.id
           WHERE u.slug = $1 AND u.active
           ORDER BY t.reset_at DESC, t.id DESC LIMIT 1`,
          [pick(ctx.slugs)],
        );
        const row = rows[0];
        if (!row) return null;
        const { displayName, ...timer } = row;
        return { timer, displayName };
      },
    },
  ];
}
