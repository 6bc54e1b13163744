package scopedpgx

import (
	"context"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
)

// measure is [dbtest.Replicated.Measure] with pgx pools. Run it with
//
//	SCOPEDPGX_MEASURE=1 SCOPED_TEST_PG_CLUSTER=1 flock /tmp/bench.lock go test -run 'TestReplica/Measure' -v ./scopedpgx/
func (s *replicaSetup) measure(t *testing.T) {
	s.r.Measure(t, dbtest.ReplicaMeasure{Env: "SCOPEDPGX_MEASURE", Table: s.table,
		Delayed: func(t *testing.T, delay time.Duration, conns int) dbtest.ReplicaUnits {
			primary := proxyTo(t, s.r.Primary.DSN, delay).pool(t, int32(conns))
			replica := proxyTo(t, s.r.Standby.DSN, delay).pool(t, int32(conns))
			ro := pgx.TxOptions{AccessMode: pgx.ReadOnly}
			alone, one := NewTx(primary, ro), NewTx(primary, ro, WithReplicas(replica))
			return dbtest.ReplicaUnits{
				PrimaryAlone: func(ctx context.Context, id int) error { _, _, err := s.read(ctx, alone, id); return err },
				OneReplica:   func(ctx context.Context, id int) error { _, _, err := s.read(ctx, one, id); return err },
				Clients: func(wait time.Duration) dbtest.ReadYourWrites {
					opts := []Option{WithReplicas(replica)}
					if wait > 0 {
						opts = append(opts, WithReplicaWait(wait))
					}
					return s.clients(NewTx(primary, pgx.TxOptions{}, opts...))
				},
			}
		}})
}
