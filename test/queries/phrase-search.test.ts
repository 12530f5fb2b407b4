import { beforeAll, expect, it } from 'vitest';
import * as phrases from '../../src/queries/phrases.js';
import type * as users from '../../src/queries/users.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

// The search asks the trigram index for its longest words and filters by the whole text; these
// protect that the whole text still decides what matches.
const testDb = useTestDatabase();
const token = () => Math.random().toString(36).slice(2, 10);
let editor: users.User;
beforeAll(async () => {
  editor = await newAdmin(testDb.db);
});

const texts = async (userId: string, search: string) =>
  (await phrases.listForUser(testDb.db, userId, { search })).items.map((item) => item.text);

it('matches the whole search text, not its words apart or in another order', async () => {
  const user = await newUser(testDb.db);
  const tag = token();
  for (const text of [`${tag} keep and going`, `${tag} going and keep`, `${tag} keep it going`, `${tag} KEEP AND GOING on`]) {
    await phrases.create(testDb.db, { text, createdBy: editor.id });
  }
  expect(await texts(user.id, `${tag} keep and going`)).toEqual([`${tag} KEEP AND GOING on`, `${tag} keep and going`]);
  expect((await phrases.listForUser(testDb.db, user.id, { search: `keep and going` })).total).toBe(2);
  expect(await texts(user.id, `going and keep`)).toEqual([`${tag} going and keep`]);
});

it('finds a search made only of short words, and one with a single long word', async () => {
  const user = await newUser(testDb.db);
  const tag = token();
  await phrases.create(testDb.db, { text: `Go on ${tag}, be it so`, createdBy: editor.id });
  expect(await texts(user.id, 'be it so')).toContain(`Go on ${tag}, be it so`);
  expect(await texts(user.id, `${tag}, be`)).toEqual([`Go on ${tag}, be it so`]);
  expect(await texts(user.id, tag.toUpperCase())).toEqual([`Go on ${tag}, be it so`]);
});
