import type pg from 'pg';

/** Tables big enough at bench scale that a sequential scan on them is a defect. */
const bigTables = ['users', 'phrases', 'user_excluded_phrases', 'refresh_tokens', 'phrase_suggestions', 'incident_timers', 'user_roles'];

export interface PlanSummary {
  /** True when neither plan scans a big table sequentially and the plans use an index. */
  usesIndex: boolean;
  /** Index names the plans use, and big tables scanned sequentially, in the custom plan (planned with the values)… */
  indexes: string[];
  seqScans: string[];
  /** …and in the generic plan (planned without them) that a named statement may switch to after five runs. */
  generic: { indexes: string[]; seqScans: string[] };
}

function literalOf(client: pg.ClientBase, value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (Buffer.isBuffer(value)) return `'\\x${value.toString('hex')}'`;
  if (value instanceof Date) return client.escapeLiteral(value.toISOString());
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return client.escapeLiteral(typeof value === 'string' ? value : JSON.stringify(value));
}

// Only what EXPLAIN takes: a transaction's control (BEGIN, START TRANSACTION, which
// phraseSuggestions.approve sends, COMMIT …) and its SET LOCALs are passed over.
const explainable = /^\s*(select|insert|update|delete|merge|values|with)\b/i;

function readPlan(lines: string[], indexes: Set<string>, seqScans: Set<string>): void {
  for (const line of lines) {
    const index = /Index (?:Only )?Scan(?: Backward)? using (\S+)|Bitmap Index Scan on (\S+)/.exec(line);
    if (index) indexes.add(index[1] ?? index[2]!);
    const seq = /Seq Scan on (\S+)/.exec(line);
    if (seq && bigTables.includes(seq[1]!)) seqScans.add(seq[1]!);
  }
}

/**
 * EXPLAINs each statement twice: with its parameters (the custom plan) and, prepared, with
 * `plan_cache_mode = force_generic_plan` (the plan a named statement may settle on), and says
 * whether both use indexes only.
 */
export async function explainStatements(
  client: pg.ClientBase,
  statements: Array<{ sql: string; parameters: readonly unknown[] }>,
): Promise<PlanSummary> {
  const custom = { indexes: new Set<string>(), seqScans: new Set<string>() };
  const generic = { indexes: new Set<string>(), seqScans: new Set<string>() };
  for (const statement of statements) {
    if (!explainable.test(statement.sql)) continue;
    const plan = async (text: string) =>
      (await client.query<{ 'QUERY PLAN': string }>(text, [...statement.parameters])).rows.map((row) => row['QUERY PLAN']);
    readPlan(await plan(`EXPLAIN ${statement.sql}`), custom.indexes, custom.seqScans);
    await client.query('BEGIN');
    try {
      await client.query('SET LOCAL plan_cache_mode = force_generic_plan');
      await client.query(`PREPARE bench_generic AS ${statement.sql}`);
      // EXECUTE takes no bind parameters: its arguments go in as literals.
      const literals = statement.parameters.map((value) => literalOf(client, value)).join(', ');
      readPlan(
        (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN EXECUTE bench_generic${literals ? `(${literals})` : ''}`)).rows.map(
          (row) => row['QUERY PLAN'],
        ),
        generic.indexes,
        generic.seqScans,
      );
    } finally {
      await client.query('ROLLBACK');
      await client.query('DEALLOCATE ALL');
    }
  }
  return {
    usesIndex: custom.indexes.size > 0 && custom.seqScans.size === 0 && generic.indexes.size > 0 && generic.seqScans.size === 0,
    indexes: [...custom.indexes],
    seqScans: [...custom.seqScans],
    generic: { indexes: [...generic.indexes], seqScans: [...generic.seqScans] },
  };
}
