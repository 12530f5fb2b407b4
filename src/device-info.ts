/** A value as jsonb stores it and pg parses it back. */
type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };

/**
 * Free-form facts about the device of a login (user agent, platform…): a plain JSON object,
 * as `refreshTokens` validates it and `refresh_tokens.device_info`'s CHECK requires. Declared
 * here once: the generated `RefreshTokens['device_info']` is this type (`npm run codegen`
 * imports it), and `refreshTokens` exports it.
 */
export type DeviceInfo = { [key: string]: JsonValue | undefined };
