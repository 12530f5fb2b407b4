// pg's module of value conversions, which @types/pg does not describe. Imported by name (not
// looked up at run time with createRequire), so that a service's bundler takes it into the
// bundle with the rest of pg.
declare module 'pg/lib/utils.js' {
  const utils: {
    /** pg's conversion of a JavaScript value to a query parameter (Dates, Buffers, arrays, JSON). */
    prepareValue(value: unknown): unknown;
  };
  export = utils;
}
