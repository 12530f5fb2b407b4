/**
 * Node's flag that leaves out its fetch globals (`--no-experimental-fetch`), for the tests'
 * processes: the commands they start (run-cli.ts) and vitest's workers (vitest.config.ts).
 * None uses fetch, but on Node 20 pg's check for Cloudflare Workers touches `Response` when
 * it loads, and that alone loads undici: about 30 ms of CPU in every command and 70 ms in
 * every worker (issue 19). Later Nodes answer that check from `navigator` without loading
 * undici, and Node 23 removed the flag, so it is empty where Node no longer knows it.
 *
 * @example spawn(process.execPath, [...withoutFetch, entry])
 */
export const withoutFetch: readonly string[] = process.allowedNodeEnvironmentFlags.has('--no-experimental-fetch')
  ? ['--no-experimental-fetch']
  : [];
