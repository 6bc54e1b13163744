// This module requires the others of this repository at the version they
// are released at together (.ci/release-version). In this checkout go.work
// resolves it; outside the workspace (GOWORK=off), run go through .ci/alone,
// which serves this checkout at that version: .ci/alone DIR go test ./...
module github.com/go-scoped/scoped/scopedgrpc

go 1.24.0

require (
	github.com/go-scoped/scoped v0.1.0
	github.com/go-sql-driver/mysql v1.10.1
	github.com/grpc-ecosystem/go-grpc-middleware/v2 v2.0.1
	github.com/jackc/pgx/v5 v5.8.0
	github.com/lib/pq v1.12.3
	go.uber.org/goleak v1.3.0
	google.golang.org/grpc v1.53.0
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/golang/protobuf v1.5.2 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jinzhu/copier v0.4.0 // indirect
	golang.org/x/net v0.14.0 // indirect
	golang.org/x/sys v0.11.0 // indirect
	golang.org/x/text v0.29.0 // indirect
	google.golang.org/genproto v0.0.0-20230110181048-76db0878b65f // indirect
	google.golang.org/protobuf v1.31.0 // indirect
)
