// API (Go): OpenFeature go-sdk + the OpenTelemetry traces hook. Each
// evaluation becomes a span event "feature_flag.evaluation" on the request's
// span (the otelhttp middleware continues the browser's trace from its
// traceparent header).
//
// go get github.com/open-feature/go-sdk github.com/open-feature/go-sdk-contrib/hooks/open-telemetry \
//   go.opentelemetry.io/otel go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp
package main

import (
	"context"
	"net/http"

	otelhook "github.com/open-feature/go-sdk-contrib/hooks/open-telemetry/pkg"
	"github.com/open-feature/go-sdk/openfeature"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The capability this build implements: what accord compares against the
// feature's new_capability.
const checkoutCapability = "v2"

func main() {
	// Tracer provider set-up (OTLP exporter to the Collector, resource with
	// service.name "checkout-api", mapped to the api layer in the catalog)
	// is omitted; see the OpenTelemetry Go getting-started guide.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	openfeature.AddHooks(otelhook.NewTracesHook())
	client := openfeature.NewDefaultClient()

	checkout := func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context() // carries the request span: the hook writes its event there
		enabled, _ := client.BooleanValue(ctx, "checkout_v2", false, openfeature.NewEvaluationContext(userID(r), nil))
		flow, payloadVersion := "v1", 1
		if enabled {
			flow, payloadVersion = "v2", 2
		}
		// What the API did, on the span: accord reads span attributes when
		// the evaluation event lacks them.
		trace.SpanFromContext(ctx).SetAttributes(
			attribute.String("accord.selected_flow", flow),
			attribute.String("accord.api_capability", checkoutCapability),
			attribute.Int("accord.job_payload_version", payloadVersion),
		)
		enqueueFulfilment(ctx, payloadVersion) // injects the trace context into the job (see JobHandler.java)
		w.WriteHeader(http.StatusAccepted)
	}
	http.Handle("/checkout", otelhttp.NewHandler(http.HandlerFunc(checkout), "POST /checkout"))
	_ = http.ListenAndServe("127.0.0.1:8080", nil)
}

func userID(r *http.Request) string { return r.Header.Get("X-User-Id") }

// publish hands a job to the fulfilment queue; replace with your queue client.
var publish = func(headers map[string]string, payloadVersion int) {}

// enqueueFulfilment carries the trace context into the job (W3C traceparent
// in its headers), so the worker's evaluations share the request's trace id.
func enqueueFulfilment(ctx context.Context, payloadVersion int) {
	headers := map[string]string{}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(headers))
	publish(headers, payloadVersion)
}
