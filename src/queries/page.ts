/** Which page of a list: `limit` 1 to 100 (default 20), `offset` 0 or more (default 0). */
export interface PageOptions {
  limit?: number | undefined;
  offset?: number | undefined;
}

/** One page of a list, with the number of matches across all pages. */
export interface Page<T> {
  items: T[];
  total: number;
}

/**
 * Turns a page's rows, each carrying the total of all matches as `count(*) OVER ()` from the
 * same scan, into a {@link Page}. Only a page past the end has no row to carry the total;
 * then `countAll` runs, the one case that costs a second query.
 *
 * @example
 * const rows = await query.select(sql<string>`count(*) OVER ()`.as('total')).limit(20).offset(40).execute()
 * return pageOf(rows, 40, countAll) // { items, total }
 */
export async function pageOf<T>(
  rows: (T & { total: string | number | bigint })[],
  offset: number,
  countAll: () => Promise<number>,
): Promise<Page<T>> {
  const first = rows[0];
  const total = first !== undefined ? Number(first.total) : offset === 0 ? 0 : await countAll();
  return { items: rows.map(({ total: _total, ...item }) => item as T), total };
}
