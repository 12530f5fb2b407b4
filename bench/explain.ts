import type pg from 'pg';

/** Tables big enough at bench scale that a sequential scan on them is a defect. */
const bigTables = ['users', 'phrases', 'user_excluded_phrases', 'refresh_tokens', 'phrase_suggestions', 'incident_timers', 'user_roles'];

export interface PlanSummary {
  usesIndex: boolean;
  /** Index names the plans use, and big tables scanned sequentially. */
  indexes: string[];
  seqScans: string[];
}

const transactionControl = /^\s*(begin|commit|rollback|savepoint|release)/i;

/** EXPLAINs each statement (with its parameters) and says whether the plans use indexes only. */
export async function explainStatements(
  client: pg.ClientBase,
  statements: Array<{ sql: string; parameters: readonly unknown[] }>,
): Promise<PlanSummary> {
  const indexes = new Set<string>();
  const seqScans = new Set<string>();
  for (const statement of statements) {
    if (transactionControl.test(statement.sql)) continue;
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${statement.sql}`, [...statement.parameters]);
    for (const { 'QUERY PLAN': line } of rows) {
      const index = /Index (?:Only )?Scan(?: Backward)? using (\S+)|Bitmap Index Scan on (\S+)/.exec(line);
      if (index) indexes.add(index[1] ?? index[2]!);
      const seq = /Seq Scan on (\S+)/.exec(line);
      if (seq && bigTables.includes(seq[1]!)) seqScans.add(seq[1]!);
    }
  }
  return { usesIndex: indexes.size > 0 && seqScans.size === 0, indexes: [...indexes], seqScans: [...seqScans] };
}
