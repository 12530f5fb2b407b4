import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { watchedStream } from '../../../src/operations/files/watched-output.js';

// A read that hangs (a disk or a network mount that stopped answering) tells nothing: the
// watch is all that ends it, and only while the reader waits for it.
describe('a watched stream', () => {
  it('fails with the stall error once its input brought nothing for the bound while it was read, and stops what feeds it', async () => {
    const input = new PassThrough();
    let stopped = false;
    const output = watchedStream(input, 200, () => new Error('the input stalled'), () => (stopped = true));
    output.resume();
    input.write('a first chunk');

    const [error] = await once(output, 'error');

    expect((error as Error).message).toBe('the input stalled');
    expect(stopped).toBe(true);
  });

  it('counts no time its reader holds it back, and passes everything through', async () => {
    const input = new PassThrough({ highWaterMark: 4 });
    const output = watchedStream(input, 200, () => new Error('the input stalled'));
    const failed = once(output, 'error').then(() => 'failed');
    // Nobody reads for three bounds: the input, full, is paused by the reader, not stalled.
    const chunks = Array.from({ length: 8 }, (_, i) => `chunk ${i};`);
    for (const chunk of chunks) input.write(chunk);
    input.end();
    await new Promise((resolve) => setTimeout(resolve, 600));
    const read: string[] = [];
    for await (const chunk of output) read.push(String(chunk));

    expect(read.join('')).toBe(chunks.join(''));
    expect(await Promise.race([failed, Promise.resolve('read')])).toBe('read');
  });
});
