import { createRequire } from 'node:module';
import { context, type Span, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import type { PreparedStatementsMode } from '../../src/db/db-config.js';
import { databaseTarget } from '../../src/db/database-target.js';
import { closeNamedStatement } from '../../src/db/named-statement.js';
import { prepareQuery } from '../../src/db/prepared-query.js';
import { openClient } from '../../src/db/with-client.js';
import { settlesWithin } from '../../src/db/settles-within.js';
import { ScriptQuery } from '../../src/operations/restore/script-query.js';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

// A service's OpenTelemetry set-up, in this process: @opentelemetry/instrumentation-pg patches
// pg's Client and pg-pool (loaded already by the imports above: requiring them again after
// enable() is what patches them), spans go to an in-memory exporter, and the context follows
// async calls as the Node SDK's does. Spans are also recorded when they start, so that a span
// started and never ended (what named statements did: issue 18) is seen.
const started: ReadableSpan[] = [];
const recordStarts: SpanProcessor = {
  onStart: (span) => void started.push(span as unknown as ReadableSpan),
  onEnd: () => undefined,
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [recordStarts, new SimpleSpanProcessor(exporter)] });
const tracer = tracerProvider.getTracer('a-service');

class CollectOnDemand extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}
const metrics = new CollectOnDemand();
const meterProvider = new MeterProvider({ readers: [metrics] });

const instrumentation = new PgInstrumentation({ enabled: false });
const testDb = useTestDatabase();

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  instrumentation.setTracerProvider(tracerProvider);
  instrumentation.setMeterProvider(meterProvider);
  instrumentation.enable();
  const require = createRequire(import.meta.url);
  require('pg');
  require('pg-pool');
});

afterAll(async () => {
  instrumentation.disable();
  context.disable();
  await meterProvider.shutdown();
  await tracerProvider.shutdown();
});

/** The pg.query spans that `work` started, run under a span of the service's own. */
async function querySpansOf(work: () => Promise<unknown>): Promise<{ parent: Span; spans: ReadableSpan[] }> {
  started.length = 0;
  let parent: Span | undefined;
  await tracer.startActiveSpan('request', async (span) => {
    parent = span;
    try {
      await work();
    } finally {
      span.end();
    }
  });
  const traceId = parent!.spanContext().traceId;
  const inTrace = started.filter((span) => span.spanContext().traceId === traceId);
  const spans = inTrace.filter((span) => span.name.startsWith('pg.query'));
  return { parent: parent!, spans: spans.filter((span) => !isConnectionCheck(span, inTrace)) };
}

// The pool asks each new connection where it leads (statement-naming.ts) before handing it out:
// that query's span is under pg-pool's connect span, itself under the caller's. It is seen, and
// ended, but it is not one of the statements a test looks at.
function isConnectionCheck(span: ReadableSpan, inTrace: ReadableSpan[]): boolean {
  const parent = inTrace.find((candidate) => candidate.spanContext().spanId === span.parentSpanContext?.spanId);
  if (parent?.name.startsWith('pg-pool.connect') !== true) return false;
  expect(span.ended, 'the connection check’s span was never ended').toBe(true);
  return true;
}

// A named statement the server fails (22012, division by zero) once it runs.
const divide = prepareQuery((db, p: { by: number }) => db.selectNoFrom(sql<number>`1 / ${p.by}`.as('x')));

function instrumentedDb(preparedStatements: PreparedStatementsMode): Kysely<DB> {
  return createDb({ databaseUrl: testDb.url, maxConnections: 2, minConnections: 0, preparedStatements });
}

describe('OpenTelemetry’s pg instrumentation', () => {
  let db: Kysely<DB>;
  let fixtures: {
    user: users.User;
    admin: users.User;
    suggestions: string[];
    token: string;
  };

  beforeAll(async () => {
    db = instrumentedDb('on');
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    await incidentTimers.create(testDb.db, { userId: user.id });
    const suggestions = [];
    for (let i = 0; i < 4; i++) suggestions.push((await phraseSuggestions.submit(testDb.db, user.id, `Traced phrase ${i}`)).id);
    const { token } = await refreshTokens.issue(testDb.db, { userId: user.id });
    fixtures = { user, admin, suggestions, token };
  });

  afterAll(async () => {
    await db?.destroy();
  });

  // Every statement built with prepareQuery (a named statement), outside a transaction (the
  // direct runner) and inside a service's own (Kysely's connection), and plain ones beside them.
  const hotPaths: Array<[string, (db: Kysely<DB>) => Promise<unknown>, RegExp]> = [
    ['users.findByEmail', (db) => users.findByEmail(db, fixtures.user.email), /from "public"."users" where lower\(email\)/],
    ['users.findById', (db) => users.findById(db, fixtures.user.id), /from "public"."users" where "id" = \$1/],
    ['users.findBySlug', (db) => users.findBySlug(db, fixtures.user.slug), /from "public"."users" where "slug" = \$1/],
    ['incidentTimers.latestPublicBySlug', (db) => incidentTimers.latestPublicBySlug(db, fixtures.user.slug), /inner join "public"."incident_timers"/],
    ['phrases.randomForUser', (db) => phrases.randomForUser(db, fixtures.user.id), /unnest\(array\(SELECT random\(\)/],
    ['phrases.randomForSlug', (db) => phrases.randomForSlug(db, fixtures.user.slug), /left join lateral/],
    ['phrases.listForUser', (db) => phrases.listForUser(db, fixtures.user.id), /count\(\*\) OVER \(\)/],
    ['phrases.listForUser (search)', (db) => phrases.listForUser(db, fixtures.user.id, { search: 'traced' }), /ilike/],
    ['refreshTokens.issue', (db) => refreshTokens.issue(db, { userId: fixtures.user.id }), /insert into "public"."refresh_tokens"/],
    ['phrases.list (the admin check)', (db) => phrases.list(db, fixtures.admin.id, { limit: 1 }), /^select exists \(select/],
    ['users.create (not prepared)', (db) => newUser(db), /insert into "public"."users"/],
  ];

  it.each(hotPaths)('ends one span per statement of %s, with its SQL, under the caller’s span', async (_, work, sqlText) => {
    const { parent, spans } = await querySpansOf(() => work(db));
    expect(spans.length).toBeGreaterThan(0);
    for (const span of spans) {
      expect(span.ended, `${span.attributes['db.query.text']} was never ended`).toBe(true);
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(span.attributes['db.query.text']).toEqual(expect.any(String));
    }
    expect(spans.map((span) => span.attributes['db.query.text'])).toContainEqual(expect.stringMatching(sqlText));
  });

  it.each(hotPaths)('does the same for %s inside the service’s transaction', async (_, work, sqlText) => {
    const { parent, spans } = await querySpansOf(() => db.transaction().execute((trx) => work(trx)));
    const texts = spans.map((span) => span.attributes['db.query.text']);
    expect(texts[0]).toBe('begin');
    expect(texts.at(-1)).toBe('commit');
    expect(texts).toContainEqual(expect.stringMatching(sqlText));
    for (const span of spans) {
      expect(span.ended, `${span.attributes['db.query.text']} was never ended`).toBe(true);
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    }
  });

  it('ends the spans of the named statements that run in the library’s own transactions: rotate, approve, reject', async () => {
    const { parent, spans } = await querySpansOf(async () => {
      await refreshTokens.rotate(db, fixtures.token);
      await phraseSuggestions.approve(db, { suggestionId: fixtures.suggestions[0]!, adminId: fixtures.admin.id });
      await phraseSuggestions.reject(db, { suggestionId: fixtures.suggestions[1]!, adminId: fixtures.admin.id });
    });
    const texts = spans.map((span) => String(span.attributes['db.query.text']));
    expect(texts.filter((text) => text === 'start transaction isolation level read committed')).toHaveLength(2);
    expect(texts).toContainEqual(expect.stringMatching(/^with "owner" as .* "revoked" as/s));
    expect(texts).toContainEqual(expect.stringMatching(/for update$/));
    expect(texts).toContainEqual(expect.stringMatching(/^with "created" as \(insert into "public"."phrases"/));
    expect(texts).toContainEqual(expect.stringMatching(/set "status" = 'rejected'/));
    for (const span of spans) {
      expect(span.ended, `${span.attributes['db.query.text']} was never ended`).toBe(true);
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    }
  });

  it('ends the span of a named statement that fails, marked as an error, in a transaction or not', async () => {
    for (const run of [(work: (db: Kysely<DB>) => Promise<unknown>) => work(db), (work: (db: Kysely<DB>) => Promise<unknown>) => db.transaction().execute(work)]) {
      const { spans } = await querySpansOf(() => run((db) => divide.execute(db, { by: 0 })).catch(() => undefined));
      const failed = spans.filter((span) => span.attributes['db.query.text'] === 'select 1 / $1 as "x"');
      expect(failed).toHaveLength(1);
      expect(failed[0]!.ended).toBe(true);
      expect(failed[0]!.status.code).toBe(SpanStatusCode.ERROR);
      for (const span of spans) expect(span.ended).toBe(true);
    }
  });

  // The pooler probe closes the statements it named with a protocol-level Close, which has no
  // SQL text: instrumentation-pg ends a query object's span only through its callback, and
  // patches that only for an object with a text.
  it('ends the span of a protocol-level Close, as the pooler probe sends it', async () => {
    const { parent, spans } = await querySpansOf(async () => {
      const client = await openClient(testDb.url);
      try {
        await closeNamedStatement(client, 'kw_never_prepared');
      } finally {
        await client.end();
      }
    });
    expect(spans).toHaveLength(1);
    expect(spans[0]!.ended, 'the Close’s span was never ended').toBe(true);
    expect(spans[0]!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(spans[0]!.attributes['db.query.text']).toBe('-- close statement kw_never_prepared (a protocol Close message, not SQL)');
  });

  // A restore sends each of the backup's statements as a query object of its own.
  it('ends the span of each statement a restore sends from a backup, one that fails too', async () => {
    const { parent, spans } = await querySpansOf(async () => {
      const client = await openClient(testDb.url);
      try {
        const answered = new ScriptQuery('SELECT 1');
        void client.query(answered);
        await answered.done;
        const refused = new ScriptQuery('SELECT 1 / 0');
        void client.query(refused);
        await refused.done.catch(() => undefined);
      } finally {
        await client.end();
      }
    });
    expect(spans.map((span) => span.attributes['db.query.text'])).toEqual(['SELECT 1', 'SELECT 1 / 0']);
    for (const span of spans) {
      expect(span.ended, `${span.attributes['db.query.text']} was never ended`).toBe(true);
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    }
    expect(spans[1]!.status.code).toBe(SpanStatusCode.ERROR);
  });

  // The instrumentation's option puts a comment in the text of a query object that names no
  // statement, by handing pg a copy of it, which has none of its methods.
  describe('with addSqlCommenterCommentToQueries', () => {
    beforeAll(() => instrumentation.setConfig({ addSqlCommenterCommentToQueries: true }));
    afterAll(() => instrumentation.setConfig({}));

    it("a restore's statement still runs as the restore sends it, and the pooler probe's Close still closes", async () => {
      await querySpansOf(async () => {
        const client = await openClient(testDb.url);
        try {
          // Before, pg ran the copy's text as plain SQL and the restore's query never settled:
          // every table of public stayed held until the stall watch gave up, a minute later.
          const statement = new ScriptQuery('SELECT 1');
          void client.query(statement);
          expect(await settlesWithin(statement.done, 5_000), 'the statement never settled').toBe(true);
          await expect(statement.done).resolves.toBeUndefined();
          // Before, the Close went out as an empty query, and the statement stayed prepared.
          await client.query({ name: 'kw_commented', text: 'SELECT 2' });
          await closeNamedStatement(client, 'kw_commented');
          const { rows } = await client.query("SELECT count(*)::int AS n FROM pg_catalog.pg_prepared_statements WHERE name = 'kw_commented'");
          expect(rows).toEqual([{ n: 0 }]);
        } finally {
          await client.end();
        }
      });
    });
  });

  it('names the pool by host, port and database in its connection metrics', async () => {
    await users.findById(db, fixtures.user.id);
    const { host, port, database } = databaseTarget(testDb.url);
    const { resourceMetrics } = await metrics.collect();
    const poolNames = resourceMetrics.scopeMetrics
      .flatMap((scope) => scope.metrics)
      .filter((metric) => metric.descriptor.name === 'db.client.connection.count')
      .flatMap((metric) => metric.dataPoints.map((point) => point.attributes['db.client.connection.pool.name']));
    expect(poolNames).toContain(`${host}:${port}/${database}`);
    expect(poolNames.filter((name) => String(name).includes('unknown'))).toEqual([]);
  });
});
