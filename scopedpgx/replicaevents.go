package scopedpgx

import (
	"context"
	"strconv"
	"sync/atomic"

	"github.com/go-scoped/scoped"
)

// routeKind is where a unit's transaction runs, and why, as its events
// report it ([scoped.Event.Route]). The kinds from routeLags to
// routeFailed name the replica the unit left or skipped.
type routeKind uint32

const (
	routePrimary      routeKind = iota // not read-only
	routeReplica                       // on a replica
	routeLags                          // on the primary: the replica lags past WithMaxReplicaLag
	routeDown                          // on the primary: the replica gave no connection, or lost it
	routeBehind                        // on the primary: the replica has not replayed the unit's position
	routeFailed                        // on the primary: the replica's BEGIN failed otherwise
	routeSerializable                  // on the primary: a hot standby cannot run SERIALIZABLE
	routeSnapshot                      // on the primary: REPEATABLE READ (or a BeginQuery) with a position
	routeKinds
)

// routeNames are a replica's routes as events name them, made once so that
// reporting one allocates nothing. Replicas are named by their place in
// WithReplicas, not by host: a pool's configuration may list fallback
// hosts, so its first host need not be the server it reached.
func routeNames(n int) [routeKinds]string {
	r := "replica " + strconv.Itoa(n)
	return [routeKinds]string{
		routeReplica: r,
		routeLags:    "primary (" + r + " lags)",
		routeDown:    "primary (" + r + " down)",
		routeBehind:  "primary (" + r + " has not replayed the position)",
		routeFailed:  "primary (" + r + " failed)",
	}
}

// route is a unit's routeKind and the index of the replica it names,
// written as the unit is routed and read by its events, concurrently.
type route struct{ v atomic.Uint32 }

func (r *route) set(k routeKind, replica int) { r.v.Store(uint32(replica)<<8 | uint32(k)) }

// name returns the route's name among the replicas of rt.
func (rt *router) name(r *route) string {
	v := r.v.Load()
	switch k := routeKind(v & 0xff); k {
	case routePrimary:
		return "primary"
	case routeSerializable:
		return "primary (serializable)"
	case routeSnapshot:
		return "primary (repeatable read with a position)"
	default:
		return rt.replicas[v>>8].names[k]
	}
}

// reportRoute makes the events of t's unit say where t runs, when there
// are replicas to choose from. Without replicas it costs nothing, not
// even the closure.
func (rt *router) reportRoute(ctx context.Context, t *tx) {
	if len(rt.replicas) == 0 {
		return
	}
	scoped.ReportRoute(ctx, func() string { return rt.name(&t.reads.route) })
}
