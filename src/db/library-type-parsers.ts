import pg from 'pg';

// The types of what the library's functions return: booleans, 4-byte integers, text, uuids,
// bytea, timestamptz and jsonb, and arrays of them. Not int8, which it converts itself (Number()
// takes pg's text and a service's BigInt alike), nor any type it never returns (dates,
// timestamps without a zone, json): a service's own parsers for those reach its own queries on
// `db` as they did.
const returnedTypes = [16, 17, 23, 25, 1184, 2950, 3802, 1000, 1001, 1007, 1009, 1185, 2951, 3807];

// pg's parsers for them as they are when this module loads (pg's own, unless a module the
// service loaded before this package changed them): a service's later
// `pg.types.setTypeParser(1184, …)` (timestamps as strings) is process-wide, and made the
// library's timestamps strings where its types say Date, for some statements and not others
// (a named statement keeps the parsers of its first run on a connection).
const pinned = new Map(returnedTypes.map((oid) => [oid, pg.types.getTypeParser(oid, 'text')]));

/**
 * The type parsers of the library's connections (pg's `types` option): for the types the
 * library's functions return, pg's as they were when the package loaded, so that a service's
 * later `pg.types.setTypeParser` does not change what the functions return (nor, for those
 * types, what the service's own queries on `db` get); pg's current ones for any other type.
 *
 * @example new pg.Pool({ connectionString, types: libraryTypeParsers })
 */
export const libraryTypeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    const fixed = format === 'binary' ? undefined : pinned.get(oid);
    return (fixed ?? pg.types.getTypeParser(oid, format ?? 'text')) as (value: string) => unknown;
  },
};
