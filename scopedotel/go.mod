// This module requires the others of this repository at the version they
// are released at together (.ci/release-version). In this checkout go.work
// resolves it; outside the workspace (GOWORK=off), run go through .ci/alone,
// which serves this checkout at that version: .ci/alone DIR go test ./...
module github.com/go-scoped/scoped/scopedotel

go 1.24.0

require (
	github.com/go-scoped/scoped v0.1.0
	go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp v0.42.0
	go.opentelemetry.io/otel v1.20.0
	go.opentelemetry.io/otel/metric v1.20.0
	go.opentelemetry.io/otel/sdk v1.20.0
	go.opentelemetry.io/otel/sdk/metric v1.20.0
	go.opentelemetry.io/otel/trace v1.20.0
	go.uber.org/goleak v1.1.10
)

require (
	github.com/felixge/httpsnoop v1.0.3 // indirect
	github.com/go-logr/logr v1.3.0 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/jinzhu/copier v0.3.5 // indirect
	golang.org/x/lint v0.0.0-20190930215403-16217165b5de // indirect
	golang.org/x/sys v0.14.0 // indirect
	golang.org/x/tools v0.6.0 // indirect
)
