import type { CamelCase } from '../db/camel-cased-db.js';

/**
 * A generated row type with camelCase keys: the public result types derive from the
 * generated ones instead of being written out again.
 *
 * @example type User = CamelCased<Omit<Selectable<Users>, 'password_hash'>>
 */
export type CamelCased<T> = { [K in keyof T as K extends string ? CamelCase<K> : K]: T[K] };
