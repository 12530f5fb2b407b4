/**
 * A `Date` as UTC text for a `timestamptz` parameter, to the millisecond: `1800-01-01T00:00:00.000+00:00`,
 * `4714-11-24T00:00:00.000+00:00 BC`.
 *
 * pg writes a `Date` in the process's local time, with the zone's offset cut to whole minutes.
 * Zones whose offset then had seconds (local mean time, in most zones before about 1900;
 * Liberia's until 1972) shifted the stored instant by up to a minute (New York's 1800-01-01
 * arrived 2 s early), and the earliest instant `timestamptz` holds was refused as out of range.
 * UTC has no such offset, whatever the service's `TZ`.
 *
 * @example timestamptzText(new Date('1800-01-01T00:00:00Z')) // '1800-01-01T00:00:00.000+00:00'
 */
export function timestamptzText(date: Date): string {
  const year = date.getUTCFullYear();
  // PostgreSQL counts years as people do: no year 0, so JavaScript's 0 is 1 BC and -4713 is 4714 BC.
  const era = year > 0 ? '' : ' BC';
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return (
    `${pad(year > 0 ? year : 1 - year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}` +
    `T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}+00:00${era}`
  );
}
