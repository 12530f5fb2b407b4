/**
 * Waits for `work` at most `ms`: true when it settled in time (a failure counts as settled),
 * false when the time ran out first. For clean-ups that must not wait on a dead peer.
 *
 * @example if (!(await settlesWithin(client.query('ROLLBACK'), 1_000))) client.destroy()
 */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
