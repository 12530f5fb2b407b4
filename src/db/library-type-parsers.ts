import pg from 'pg';

// The types whose parsing the library's results depend on: booleans, 2- and 4-byte integers,
// text, uuids, bytea, dates and timestamps, json and jsonb, and arrays of them. Not int8 or
// numeric, which it converts itself (Number() takes pg's text and a service's BigInt alike),
// nor what it never returns: a service's own parsers for those reach its own queries on `db`.
const returnedTypes = [16, 17, 21, 23, 25, 114, 1082, 1114, 1184, 2950, 3802, 1000, 1005, 1007, 1009, 1115, 1182, 1185, 2951, 3807];

// pg's own parsers for them, as they are when this module loads: a service's later
// `pg.types.setTypeParser(1184, …)` (timestamps as strings, int8 as BigInt) is process-wide,
// and made the library's timestamps strings where its types say Date, for some statements
// and not others (a named statement keeps the parsers of its first run on a connection).
const pinned = new Map(returnedTypes.map((oid) => [oid, pg.types.getTypeParser(oid, 'text')]));

/**
 * The type parsers of the library's connections (pg's `types` option): pg's own for the types
 * the library's results depend on, fixed when the package loads, so that a service's
 * `pg.types.setTypeParser` never changes what the library's functions return (the same holds
 * for the service's own queries on `db`, for those types); pg's current ones for any other.
 *
 * @example new pg.Pool({ connectionString, types: libraryTypeParsers })
 */
export const libraryTypeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    const fixed = format === 'binary' ? undefined : pinned.get(oid);
    return (fixed ?? pg.types.getTypeParser(oid, format ?? 'text')) as (value: string) => unknown;
  },
};
