// Worker (Java): OpenFeature Java SDK + the OpenTelemetry TracesHook
// (dev.openfeature.contrib.hooks:otel). Each evaluation becomes a span event
// "feature_flag" with the older attribute names (feature_flag.variant);
// accord reads both generations.
//
// The job carries the API request's trace context (W3C traceparent in its
// headers, injected by the producer); the worker's span continues that
// trace, so its evaluation has the request's trace id.

import dev.openfeature.contrib.hooks.otel.TracesHook;
import dev.openfeature.contrib.hooks.otel.TracesHookOptions;
import dev.openfeature.sdk.Client;
import dev.openfeature.sdk.OpenFeatureAPI;
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import java.util.Map;

public final class JobHandler {
    private static final TextMapGetter<Map<String, String>> HEADERS = new TextMapGetter<>() {
        @Override
        public Iterable<String> keys(Map<String, String> carrier) {
            return carrier.keySet();
        }

        @Override
        public String get(Map<String, String> carrier, String key) {
            return carrier == null ? null : carrier.get(key);
        }
    };

    private final Tracer tracer = GlobalOpenTelemetry.getTracer("fulfilment-worker");
    private final Client flags;

    public JobHandler() {
        // service.name "fulfilment-worker" is not in the catalog's
        // [otel.layers] here: the hook adds accord.layer to every event.
        OpenFeatureAPI api = OpenFeatureAPI.getInstance();
        api.addHooks(new TracesHook(TracesHookOptions.builder()
                .extraAttributes(Attributes.of(AttributeKey.stringKey("accord.layer"), "worker"))
                .build()));
        flags = api.getClient();
    }

    public void handle(Map<String, String> headers, FulfilmentJob job) {
        Context parent = GlobalOpenTelemetry.getPropagators().getTextMapPropagator()
                .extract(Context.current(), headers, HEADERS);
        Span span = tracer.spanBuilder("process fulfilment job")
                .setParent(parent)
                .setSpanKind(SpanKind.CONSUMER)
                .startSpan();
        try (Scope ignored = span.makeCurrent()) {
            boolean v2 = flags.getBooleanValue("checkout_v2", false);
            // The payload version this worker actually processes: an old
            // worker image reading a v2 job shows up as
            // payload_version_mismatch and path_mismatch.
            span.setAttribute("accord.job_payload_version", job.payloadVersion());
            process(job, v2);
        } finally {
            span.end();
        }
    }

    private void process(FulfilmentJob job, boolean v2) {
        // ...
    }

    /** The job as dequeued. */
    public record FulfilmentJob(long payloadVersion, String orderId) {}
}
