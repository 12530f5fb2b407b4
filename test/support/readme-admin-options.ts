/**
 * The README's superuser-only session settings for `setup --admin` and `db:reset --admin`,
 * which keep a password's verifier out of the server's log, as URL parameters.
 */
export const readmeAdminOptions = 'options=-c%20log_statement%3Dnone%20-c%20log_min_duration_statement%3D-1%20-c%20log_min_error_statement%3Dpanic';

/**
 * `url` with {@link readmeAdminOptions} added, as an operator following the README writes it
 * (a string append: URLSearchParams would write the spaces as `+`).
 *
 * @example withReadmeAdminOptions('postgresql://postgres:pw@127.0.0.1/app') // '…/app?options=-c%20log_statement%3Dnone…'
 */
export function withReadmeAdminOptions(url: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${readmeAdminOptions}`;
}
