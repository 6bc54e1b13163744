// This module requires the others of this repository at the version they
// are released at together (.ci/release-version). In this checkout go.work
// resolves it; outside the workspace (GOWORK=off), run go through .ci/alone,
// which serves this checkout at that version: .ci/alone DIR go test ./...
module github.com/go-scoped/scoped/scopedconnect

go 1.24.0

require (
	connectrpc.com/connect v1.11.0
	github.com/go-scoped/scoped v0.1.0
	github.com/go-sql-driver/mysql v1.9.3
	github.com/lib/pq v1.12.3
	go.uber.org/goleak v1.3.0
	google.golang.org/grpc v1.53.0
	google.golang.org/protobuf v1.31.0
)

require (
	filippo.io/edwards25519 v1.1.0 // indirect
	github.com/golang/protobuf v1.5.2 // indirect
	github.com/jinzhu/copier v0.4.0 // indirect
	golang.org/x/net v0.5.0 // indirect
	golang.org/x/sys v0.4.0 // indirect
	golang.org/x/text v0.29.0 // indirect
	google.golang.org/genproto v0.0.0-20230110181048-76db0878b65f // indirect
)
