/** `display_name` → `displayName`, at the type level. */
type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

/**
 * A generated row type with camelCase keys: the public result types derive from the
 * generated ones instead of being written out again.
 *
 * @example type User = CamelCased<Omit<Selectable<Users>, 'password_hash'>>
 */
export type CamelCased<T> = { [K in keyof T as K extends string ? CamelCase<K> : K]: T[K] };
