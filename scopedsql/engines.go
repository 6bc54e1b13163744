package scopedsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// DefaultEngine is the name of the engine that [Open] requires unless told
// otherwise with [RequireDefault].
const DefaultEngine = "default"

// Engines are named *sql.DB pools opened from configuration by [Open], the
// Go form of Flask-SQLAlchemy-Lite's SQLALCHEMY_ENGINES. They are safe for
// concurrent use. Close them once, at shutdown.
type Engines struct {
	names  []string // sorted
	byName map[string]engine

	closeOnce sync.Once
	closeErr  error
}

type engine struct {
	cfg EngineConfig // resolved: defaults overlaid with the engine's own
	db  *sql.DB
}

// Open opens one *sql.DB per entry of engines, each configured with
// defaults overlaid by the entry's own fields (see [EngineConfig]: a
// non-zero field of the entry wins), and pings each with ctx, so that a
// wrong DSN or an unreachable server fails here, within ctx's deadline.
// Engines are opened and pinged in name order. If one fails, the error
// names it, and every engine opened so far is closed again.
//
// Open fails if engines has no entry named [DefaultEngine], unless
// [RequireDefault](false) is given, and if an engine has no Driver after
// the overlay. It never modifies defaults, engines, or anything they point
// to, and keeps no reference to them.
func Open(ctx context.Context, defaults EngineConfig, engines map[string]EngineConfig, opts ...Option) (*Engines, error) {
	o := openOptionsOf(opts)
	names := make([]string, 0, len(engines))
	for name := range engines {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, ErrNoEngines
	}
	if _, ok := engines[DefaultEngine]; !ok && o.requireDefault {
		return nil, fmt.Errorf("%w (configured: %s; or pass scopedsql.RequireDefault(false))",
			ErrNoDefaultEngine, quoteAll(names))
	}

	// Resolve every configuration before opening anything: a typo in the
	// last engine should not cost a connection to the first.
	cfgs := make([]EngineConfig, len(names))
	for i, name := range names {
		cfg, err := overlay(defaults, engines[name])
		if err != nil {
			return nil, fmt.Errorf("scopedsql: engine %q: %w", name, err)
		}
		if cfg.Driver == "" {
			return nil, fmt.Errorf("scopedsql: engine %q: no Driver, neither its own nor in the defaults", name)
		}
		cfgs[i] = cfg
	}

	e := &Engines{names: names, byName: make(map[string]engine, len(names))}
	for i, name := range names {
		db, err := openEngine(ctx, cfgs[i])
		if err != nil {
			err = fmt.Errorf("scopedsql: engine %q: %w", name, err)
			return nil, errors.Join(err, e.Close())
		}
		e.byName[name] = engine{cfg: cfgs[i], db: db}
	}
	return e, nil
}

func openEngine(ctx context.Context, cfg EngineConfig) (*sql.DB, error) {
	db, err := sql.Open(cfg.Driver, cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	cfg.apply(db)
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("ping: %w", err), db.Close())
	}
	return db, nil
}

// DB returns the pool of the named engine. For a name that Open was not
// given, it returns an error wrapping [ErrUnknownEngine] that lists the
// configured names.
func (e *Engines) DB(name string) (*sql.DB, error) {
	en, err := e.get(name)
	return en.db, err
}

// Config returns the resolved configuration of the named engine: the
// defaults overlaid with the engine's own fields, as Open applied it.
func (e *Engines) Config(name string) (EngineConfig, error) {
	en, err := e.get(name)
	if err != nil {
		return EngineConfig{}, err
	}
	cfg := en.cfg
	cfg.TxOptions = cloneTxOptions(cfg.TxOptions)
	return cfg, nil
}

// Names returns the configured engine names, sorted.
func (e *Engines) Names() []string { return append([]string(nil), e.names...) }

// Tx returns the [Tx] factory of the named engine, with the engine's
// TxOptions, ready for scoped.New:
//
//	reports := scoped.New(engines.Tx("reports"))
//
// Like scoped.New, it is meant for wiring at start-up and panics if no
// engine has that name; use [Engines.DB] to look a name up at run time.
func (e *Engines) Tx(name string) func(context.Context) (*sql.Tx, error) {
	en := e.must("Tx", name)
	return Tx(en.db, en.cfg.TxOptions)
}

// Conn returns the [Conn] factory of the named engine, ready for
// scoped.New. It panics if no engine has that name, as [Engines.Tx] does.
// Like scoped.New([Conn](db)), it does not reset a connection's session
// when its scope ends: for [NewConn]'s reset, pass it the engine's pool
// from [Engines.DB].
func (e *Engines) Conn(name string) func(context.Context) (*sql.Conn, error) {
	return Conn(e.must("Conn", name).db)
}

// Close closes every engine's pool and joins their errors. Later calls do
// nothing and return the same error.
func (e *Engines) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		for _, name := range e.names {
			if en, ok := e.byName[name]; ok {
				if err := en.db.Close(); err != nil {
					errs = append(errs, fmt.Errorf("scopedsql: close engine %q: %w", name, err))
				}
			}
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

func (e *Engines) get(name string) (engine, error) {
	en, ok := e.byName[name]
	if !ok {
		return engine{}, fmt.Errorf("%w %q (configured: %s)", ErrUnknownEngine, name, quoteAll(e.names))
	}
	return en, nil
}

func (e *Engines) must(method, name string) engine {
	en, err := e.get(name)
	if err != nil {
		panic(fmt.Sprintf("%v, in Engines.%s", err, method))
	}
	return en
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
