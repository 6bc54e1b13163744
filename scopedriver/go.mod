// This module requires the others of this repository at the version they
// are released at together (.ci/release-version). In this checkout go.work
// resolves it; outside the workspace (GOWORK=off), run go through .ci/alone,
// which serves this checkout at that version: .ci/alone DIR go test ./...
module github.com/go-scoped/scoped/scopedriver

go 1.25.0

require (
	github.com/go-scoped/scoped v0.1.0
	github.com/go-scoped/scoped/scopedpgx v0.1.0
	github.com/jackc/pgx/v5 v5.9.1
	github.com/riverqueue/river v0.25.0
	github.com/riverqueue/river/riverdriver/riverpgxv5 v0.25.0
	github.com/riverqueue/river/rivertype v0.25.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.2 // indirect
	github.com/jinzhu/copier v0.3.5 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	github.com/riverqueue/river/riverdriver v0.25.0 // indirect
	github.com/riverqueue/river/rivershared v0.25.0 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
	github.com/tidwall/gjson v1.18.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.1 // indirect
	github.com/tidwall/sjson v1.2.5 // indirect
	golang.org/x/sync v0.17.0 // indirect
	golang.org/x/text v0.29.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
