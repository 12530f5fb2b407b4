// An OpenTelemetry-instrumented service (see tracing.cjs): every statement of every hot path,
// named or not, in the service's transaction or not, must be one ended pg.query span carrying
// its SQL, under the request's span; the pool's metrics must name it host:port/database.
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { trace } = require('@opentelemetry/api');
const { started, reader } = require('./tracing.cjs');
const { createDb, incidentTimers, phraseSuggestions, phrases, refreshTokens, users } = require('@kennwilliamson/db');

const tracer = trace.getTracer('scratch-service');
const passwordHash = '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA';

async function request(name, work) {
  started.length = 0;
  await tracer.startActiveSpan(name, async (parent) => {
    try {
      await work();
    } finally {
      parent.end();
    }
    const queries = started.filter((s) => s.name.startsWith('pg.query') && s.spanContext().traceId === parent.spanContext().traceId);
    assert.ok(queries.length > 0, `${name}: no pg.query span`);
    for (const query of queries) {
      const text = query.attributes['db.query.text'];
      assert.equal(typeof text, 'string', `${name}: a span without its SQL`);
      assert.ok(query.ended, `${name}: the span of "${text.slice(0, 60)}…" was never ended`);
      assert.equal(query.parentSpanContext?.spanId, parent.spanContext().spanId, `${name}: "${text.slice(0, 60)}…" is not under the request's span`);
    }
  });
}

async function main() {
  const url = process.env.DATABASE_URL;
  const db = createDb({ databaseUrl: url, preparedStatements: 'on' });
  try {
    const slug = `otel-${randomUUID().slice(0, 8)}`;
    const user = await users.create(db, { email: `${slug}@example.org`, passwordHash, displayName: 'Traced', slug });
    const admin = await users.create(db, { email: `${slug}-admin@example.org`, passwordHash, displayName: 'Admin', slug: `${slug}-admin` });
    await users.grantRole(db, admin.id, 'admin');
    await incidentTimers.create(db, { userId: user.id });
    const suggestions = [];
    for (let i = 0; i < 2; i++) suggestions.push((await phraseSuggestions.submit(db, user.id, `Traced ${slug} ${i}`)).id);

    const hotPaths = {
      'users.findByEmail': (x) => users.findByEmail(x, user.email),
      'users.findById': (x) => users.findById(x, user.id),
      'users.findBySlug': (x) => users.findBySlug(x, user.slug),
      'incidentTimers.latestPublicBySlug': (x) => incidentTimers.latestPublicBySlug(x, user.slug),
      'phrases.randomForUser': (x) => phrases.randomForUser(x, user.id),
      'phrases.randomForSlug': (x) => phrases.randomForSlug(x, user.slug),
      'phrases.listForUser': (x) => phrases.listForUser(x, user.id, { search: 'traced' }),
      'refreshTokens.issue': (x) => refreshTokens.issue(x, { userId: user.id }),
      'users.updateProfile (not prepared)': (x) => users.updateProfile(x, user.id, { displayName: 'Traced again' }),
    };
    for (const [name, work] of Object.entries(hotPaths)) {
      await request(name, () => work(db));
      await request(`${name} in the service's transaction`, () => db.transaction().execute((trx) => work(trx)));
    }
    const { token } = await refreshTokens.issue(db, { userId: user.id });
    await request('refreshTokens.rotate', () => refreshTokens.rotate(db, token));
    await request('phraseSuggestions.approve', () => phraseSuggestions.approve(db, { suggestionId: suggestions[0], adminId: admin.id }));
    await request('phraseSuggestions.reject', () => phraseSuggestions.reject(db, { suggestionId: suggestions[1], adminId: admin.id }));

    const { host, port, pathname } = new URL(url);
    const poolName = `${host.replace(/:\d+$/, '')}:${port}/${decodeURIComponent(pathname.slice(1))}`;
    const { resourceMetrics } = await reader.collect();
    const names = resourceMetrics.scopeMetrics
      .flatMap((scope) => scope.metrics)
      .filter((metric) => metric.descriptor.name === 'db.client.connection.count')
      .flatMap((metric) => metric.dataPoints.map((point) => point.attributes['db.client.connection.pool.name']));
    assert.ok(names.includes(poolName), `the pool's metrics name it ${[...new Set(names)].join(', ')}, not ${poolName}`);
    console.log(`OpenTelemetry service: ok (${Object.keys(hotPaths).length * 2 + 3} requests, every statement one ended span under its request; pool ${poolName})`);
  } finally {
    await db.destroy();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
