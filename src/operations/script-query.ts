import type pg from 'pg';

// The part of pg's Connection a submittable query uses (pg exports no type for it).
interface WireConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
  stream: NodeJS.WritableStream & { writableNeedDrain?: boolean };
}

/**
 * One simple-protocol query of one or more SQL statements from a backup, the last of which
 * may be `COPY … FROM stdin`, whose rows `copyData` supplies. pg has no COPY FROM STDIN of
 * its own; this is the documented way to extend it (a "submittable" passed to
 * `client.query`), as pg-copy-streams does. Rows that statements return are ignored.
 *
 * @example
 * await client.query(new ScriptQuery('SET x = 1; COPY public.t (a) FROM stdin;', rows))
 */
export class ScriptQuery implements pg.Submittable {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (error: unknown) => void;
  private settled = false;
  private sourceError: unknown;
  /** True when the query failed because `copyData` failed (the backup's stream), not the server. */
  failedReading = false;

  constructor(
    private readonly text: string,
    private readonly copyData?: AsyncIterable<Buffer>,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: unknown): void {
    (connection as WireConnection).query(this.text);
  }

  handleCopyInResponse(connection: unknown): void {
    const wire = connection as WireConnection;
    if (!this.copyData) {
      wire.sendCopyFail('this statement reads no COPY data');
      return;
    }
    void this.pump(wire, this.copyData);
  }

  private async pump(wire: WireConnection, data: AsyncIterable<Buffer>): Promise<void> {
    try {
      for await (const chunk of data) {
        if (this.settled) return; // the server already refused; stop reading
        wire.sendCopyFromChunk(chunk);
        if (wire.stream.writableNeedDrain) await new Promise((resolve) => wire.stream.once('drain', resolve));
      }
      if (!this.settled) wire.endCopyFrom();
    } catch (error) {
      // The backup's stream broke (gzip damage, pg_restore failed): the server aborts the
      // COPY and with it the transaction; report the stream's error rather than the server's.
      this.sourceError = error;
      this.failedReading = true;
      if (!this.settled) wire.sendCopyFail('the backup stream failed');
    }
  }

  handleError(error: unknown): void {
    this.settle(this.sourceError ?? error);
  }

  handleReadyForQuery(): void {
    this.settle(this.sourceError);
  }

  private settle(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (error === undefined) this.resolve();
    else this.reject(error);
  }

  // Results of the statements before the COPY: not needed.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}
