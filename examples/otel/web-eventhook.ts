// Frontend (browser): OpenFeature web SDK + the OpenTelemetry EventHook.
// Every flag evaluation becomes an OpenTelemetry log record (event
// "feature_flag.evaluation") carrying the active trace id, which the
// fetch instrumentation also sends to the API as `traceparent`.
//
// npm install @openfeature/web-sdk @openfeature/open-telemetry-hooks \
//   @opentelemetry/api @opentelemetry/api-logs @opentelemetry/sdk-logs \
//   @opentelemetry/sdk-trace-web @opentelemetry/exporter-logs-otlp-http \
//   @opentelemetry/exporter-trace-otlp-http @opentelemetry/resources \
//   @opentelemetry/context-zone @opentelemetry/instrumentation \
//   @opentelemetry/instrumentation-fetch

import { OpenFeature, type EvaluationDetails, type FlagValue, type HookContext } from '@openfeature/web-sdk';
import { EventHook } from '@openfeature/open-telemetry-hooks';
import { trace } from '@opentelemetry/api';
import { logs } from '@opentelemetry/api-logs';
import { LoggerProvider, BatchLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { WebTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-web';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ZoneContextManager } from '@opentelemetry/context-zone';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { FetchInstrumentation } from '@opentelemetry/instrumentation-fetch';

const collector = 'https://otel.example.com';
// service.name "web-spa" is mapped to the frontend layer by the catalog's
// [otel.layers]; without that mapping, add 'accord.layer': 'frontend' here.
const resource = resourceFromAttributes({ 'service.name': 'web-spa', 'service.version': '2026.11.20-3f9c2a1' });

const tracerProvider = new WebTracerProvider({
  resource,
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${collector}/v1/traces` }))],
});
tracerProvider.register({ contextManager: new ZoneContextManager() });
registerInstrumentations({
  // Send traceparent to the API so its evaluations share the trace id.
  instrumentations: [new FetchInstrumentation({ propagateTraceHeaderCorsUrls: [/https:\/\/api\.example\.com/] })],
});

logs.setGlobalLoggerProvider(
  new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor(new OTLPLogExporter({ url: `${collector}/v1/logs` }))],
  }),
);

// What the page renders is decided in one place, used by the UI and by the
// hook, so the event says which flow the user actually got (accord's
// selected_flow): v2 only when the flag is on AND the API advertised it.
let apiCapability = 'v1'; // from the API's /config answer at start-up
export function checkoutFlow(enabled: boolean): 'v1' | 'v2' {
  return enabled && apiCapability === 'v2' ? 'v2' : 'v1';
}

const attributeMapper = (hookContext: HookContext, details: EvaluationDetails<FlagValue>) =>
  hookContext.flagKey === 'checkout_v2' ? { 'accord.selected_flow': checkoutFlow(details.value === true) } : {};

OpenFeature.addHooks(new EventHook({ attributeMapper }));

// Evaluate inside the span of the user action, so the log record carries
// its trace id, and the API call below continues the same trace.
export async function startCheckout(cart: unknown) {
  const config = await fetch('https://api.example.com/config').then((r) => r.json());
  apiCapability = config.checkoutCapability;
  return trace.getTracer('web-spa').startActiveSpan('checkout', async (span) => {
    try {
      const enabled = OpenFeature.getClient().getBooleanValue('checkout_v2', false);
      const flow = checkoutFlow(enabled);
      return await fetch(`https://api.example.com/checkout?flow=${flow}`, { method: 'POST', body: JSON.stringify(cart) });
    } finally {
      span.end();
    }
  });
}
