module github.com/go-scoped/scoped

go 1.24.0

require (
	github.com/DATA-DOG/go-sqlmock v1.3.3
	github.com/go-sql-driver/mysql v1.9.3
	github.com/jinzhu/copier v0.3.5
	github.com/lib/pq v1.10.9
	go.uber.org/goleak v1.1.10
)

require (
	filippo.io/edwards25519 v1.1.0 // indirect
	golang.org/x/lint v0.0.0-20190930215403-16217165b5de // indirect
	golang.org/x/tools v0.6.0 // indirect
)
