// A service's tracing set-up, loaded before anything else (`node --require ./tracing.cjs`), as
// OpenTelemetry's Node SDK is: providers registered globally, then the pg instrumentation, which
// patches pg and pg-pool when the service first requires them. Spans go to an in-memory
// exporter, and are also recorded when they start, so that one started and never ended is seen.
const { context, metrics, trace } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { PgInstrumentation } = require('@opentelemetry/instrumentation-pg');
const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');

const started = [];
const exporter = new InMemorySpanExporter();
const recordStarts = { onStart: (span) => started.push(span), onEnd: () => {}, forceFlush: async () => {}, shutdown: async () => {} };
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [recordStarts, new SimpleSpanProcessor(exporter)] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

class CollectOnDemand extends MetricReader {
  async onForceFlush() {}
  async onShutdown() {}
}
const reader = new CollectOnDemand();
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));

new PgInstrumentation();

module.exports = { started, exporter, reader };
