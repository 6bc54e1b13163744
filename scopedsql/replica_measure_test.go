package scopedsql_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// measure is [dbtest.Replicated.Measure] with lib/pq. Run it with
//
//	SCOPEDSQL_MEASURE=1 SCOPED_TEST_PG_CLUSTER=1 flock /tmp/bench.lock go test -run 'TestReplica/Measure' -v ./scopedsql/
func (s *replicas) measure(t *testing.T) {
	s.r.Measure(t, dbtest.ReplicaMeasure{Env: "SCOPEDSQL_MEASURE", Table: s.table,
		Delayed: func(t *testing.T, delay time.Duration, conns int) dbtest.ReplicaUnits {
			_, primary := newDelayProxy(t, s.r.Primary.DSN, delay)
			_, replica := newDelayProxy(t, s.r.Standby.DSN, delay)
			for _, db := range []*sql.DB{primary, replica} {
				db.SetMaxOpenConns(conns)
				db.SetMaxIdleConns(conns)
			}
			ro := &sql.TxOptions{ReadOnly: true}
			alone, one := scopedsql.NewTx(primary, ro), scopedsql.NewTx(primary, ro, scopedsql.WithReplicas(replica))
			return dbtest.ReplicaUnits{
				PrimaryAlone: func(ctx context.Context, id int) error { _, _, err := s.read(ctx, alone, id); return err },
				OneReplica:   func(ctx context.Context, id int) error { _, _, err := s.read(ctx, one, id); return err },
				Clients: func(wait time.Duration) dbtest.ReadYourWrites {
					opts := []scopedsql.Option{scopedsql.WithReplicas(replica)}
					if wait > 0 {
						opts = append(opts, scopedsql.WithReplicaWait(wait))
					}
					return s.clients(t, scopedsql.NewTx(primary, nil, opts...))
				},
			}
		}})
}
