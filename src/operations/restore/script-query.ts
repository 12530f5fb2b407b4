import type * as pg from 'pg';
import { type StallWatch, stallWatch } from '../files/stall-watch.js';

// The part of pg's Connection a submittable query uses (pg exports no type for it).
interface WireConnection {
  parse(query: { text: string }): void;
  bind(config: Record<string, never>): void;
  execute(config: Record<string, never>): void;
  sync(): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
  stream: NodeJS.WritableStream & { writableNeedDrain?: boolean; cork?: () => void; uncork?: () => void };
}

/**
 * What a COPY does when the server stops taking its rows: a backend that stopped (frozen, or on
 * a host whose kernel still acknowledges) reads nothing, so the rows wait in the socket for
 * ever, or the end of the rows goes unanswered, and TCP never tells.
 */
export interface CopyStallGuard {
  /** How long the server may read none of the rows, or leave their end unanswered, before it is looked at. */
  timeoutMs: number;
  /**
   * Whether the server is still at work on the rows it has (a CHECK that takes its time over
   * each row, with megabytes of them in the sockets): asked from elsewhere (another connection)
   * once it seemed stalled for `timeoutMs`; true gives it `timeoutMs` more.
   */
  stillWorking: () => Promise<boolean>;
  /** Called once the server did not read, or answer, and was not at work: it is to close the connection, which fails the query. */
  onStall: (what: 'read' | 'answer') => void;
}

/**
 * One statement from a backup, sent through the extended query protocol (Parse, Bind,
 * Execute, Sync), in which the server refuses a text holding more than one statement: what
 * runs is the one statement the restore's vetting parsed, whatever a lexer may have missed.
 * It may be `COPY … FROM stdin`, whose rows `copyData` supplies. pg has no COPY FROM STDIN
 * of its own; this is the documented way to extend it (a "submittable" passed to
 * `client.query`), as pg-copy-streams does. Rows that statements return are ignored.
 *
 * @example
 * await client.query(new ScriptQuery('COPY public.t (a) FROM stdin;', rows))
 */
export class ScriptQuery implements pg.Submittable {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (error: unknown) => void;
  private settled = false;
  private sourceError: unknown;
  // In COPY mode the server ignores the Sync sent with Execute; one more must follow the
  // copy's end (CopyDone, CopyFail or the server's error), exactly once, as libpq does.
  private copying = false;
  private copySynced = false;
  private wire: WireConnection | undefined;
  // Whether the server is the one behind (the rows wait for it to read, or their end for its
  // answer), rather than the backup's stream, and what it owes.
  private owed: 'read' | 'answer' | undefined;
  private watch: StallWatch | undefined;
  /** True when the query failed because `copyData` failed (the backup's stream), not the server. */
  failedReading = false;
  // The protocol's unnamed statement, which it is (its Parse names none). Said, so that
  // OpenTelemetry's pg instrumentation with addSqlCommenterCommentToQueries hands pg this query
  // and not a copy with a comment in its text: a copy has no submit(), pg ran its text as plain
  // SQL, and `done` never settled, every table of public held until the stall watch gave up.
  // Empty, so that pg records nothing as prepared.
  readonly name = '';
  // Told of the end too, as the pool's named statements settle through theirs: the
  // instrumentation ends the span it starts for a query object only through its callback
  // (each of the backup's statements left one open in the trace).
  callback: (error: Error | null) => void = () => undefined;

  constructor(
    private readonly text: string,
    private readonly copyData?: AsyncIterable<Buffer>,
    private readonly stallGuard?: CopyStallGuard,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: unknown): void {
    const wire = connection as WireConnection;
    wire.stream.cork?.();
    try {
      wire.parse({ text: this.text });
      wire.bind({});
      wire.execute({});
      wire.sync();
    } finally {
      wire.stream.uncork?.();
    }
  }

  handleCopyInResponse(connection: unknown): void {
    const wire = connection as WireConnection;
    this.wire = wire;
    this.copying = true;
    if (!this.copyData) {
      wire.sendCopyFail('this statement reads no COPY data');
      this.syncAfterCopy();
      return;
    }
    this.watchServer();
    void this.pump(wire, this.copyData);
  }

  private watchServer(): void {
    const guard = this.stallGuard;
    if (guard === undefined) return;
    this.watch = stallWatch(
      guard.timeoutMs,
      () => {
        const what = this.owed ?? 'answer';
        void guard.stillWorking().then(
          (working) => {
            if (this.settled) return;
            if (working) this.watchServer();
            else guard.onStall(what);
          },
          () => this.settled || guard.onStall(what),
        );
      },
      () => this.owed !== undefined,
    );
  }

  // The server owes something from now on: the watch counts from here.
  private owe(what: 'read' | 'answer'): void {
    this.owed = what;
    this.watch?.progress();
  }

  private syncAfterCopy(): void {
    if (!this.copying || this.copySynced) return;
    this.copySynced = true;
    this.wire?.sync();
  }

  private async pump(wire: WireConnection, data: AsyncIterable<Buffer>): Promise<void> {
    try {
      for await (const chunk of data) {
        if (this.settled) return; // the server already refused; stop reading
        wire.sendCopyFromChunk(chunk);
        if (wire.stream.writableNeedDrain) {
          this.owe('read');
          await drainedOrClosed(wire.stream);
          this.owed = undefined;
        }
      }
      if (!this.settled) {
        this.owe('answer');
        wire.endCopyFrom();
        this.syncAfterCopy();
      }
    } catch (error) {
      // The backup's stream broke (gzip damage, pg_restore failed): the server aborts the
      // COPY and with it the transaction; report the stream's error rather than the server's.
      this.sourceError = error;
      this.failedReading = true;
      if (!this.settled) {
        this.owe('answer');
        wire.sendCopyFail('the backup stream failed');
        this.syncAfterCopy();
      }
    }
  }

  handleError(error: unknown): void {
    // The server refused a row: it now skips everything up to a Sync, which must come.
    this.syncAfterCopy();
    this.settle(this.sourceError ?? error);
  }

  handleReadyForQuery(): void {
    this.settle(this.sourceError);
  }

  private settle(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.watch?.stop();
    this.callback(error === undefined ? null : (error as Error));
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

// A socket closed while rows wait for it never drains.
function drainedOrClosed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}
