import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { DB } from '../generated/db.js';

/** What every operation's two sides share: the two pools and the seeded keys to draw from. */
export interface BenchContext {
  /** The library's tuned pool (10 connections). */
  db: Kysely<DB>;
  /** A plain `pg` pool of the same size, for the hand-written side. */
  pool: pg.Pool;
  emails: string[];
  slugs: string[];
  userIds: string[];
  /** Users who excluded every second phrase. */
  excluderIds: string[];
  adminId: string;
  /** Pending suggestions; each approve takes the next one. */
  pendingSuggestionIds: string[];
}

/** A uniformly chosen element. */
export function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

/** Hands out pending suggestions one at a time to both sides, failing loudly when they run out. */
export function suggestionTaker(ids: string[]): () => string {
  let next = 0;
  return () => {
    const id = ids[next++];
    if (id === undefined) throw new Error('the benchmark ran out of seeded pending suggestions; raise scale.pendingSuggestions');
    return id;
  };
}
