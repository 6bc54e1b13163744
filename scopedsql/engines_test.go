package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

var dsnSeq atomic.Int64

// fakeDSN returns a DSN of the fake driver never returned before (even
// with -count), with kind in it (see fakeDriver).
func fakeDSN(t *testing.T, kind string) string {
	fake()
	return fmt.Sprintf("%s/%d/%s", t.Name(), dsnSeq.Add(1), kind)
}

func openEngines(t *testing.T, defaults scopedsql.EngineConfig, engines map[string]scopedsql.EngineConfig, opts ...scopedsql.Option) *scopedsql.Engines {
	t.Helper()
	e, err := scopedsql.Open(dbtest.Ctx(t), defaults, engines, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func TestOpenOverlaysDefaultsFieldByField(t *testing.T) {
	t.Parallel()
	shared, own := fakeDSN(t, "shared"), fakeDSN(t, "own")
	defaults := scopedsql.EngineConfig{
		Driver:          fakeDriverName,
		DSN:             shared,
		MaxOpenConns:    10,
		MaxIdleConns:    5,
		ConnMaxLifetime: time.Hour,
		TxOptions:       &sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true},
	}
	e := openEngines(t, defaults, map[string]scopedsql.EngineConfig{
		"default":   {},
		"own":       {DSN: own, MaxOpenConns: 3, ConnMaxIdleTime: time.Minute},
		"unlimited": {MaxOpenConns: -1, MaxIdleConns: -1, ConnMaxLifetime: -1},
		"writer":    {TxOptions: &sql.TxOptions{}},
	})

	for _, tc := range []struct {
		engine      string
		want        scopedsql.EngineConfig
		wantMaxOpen int // as database/sql reports it
	}{
		{"default", defaults, 10},
		{"own", scopedsql.EngineConfig{
			Driver: fakeDriverName, DSN: own, MaxOpenConns: 3, MaxIdleConns: 5,
			ConnMaxLifetime: time.Hour, ConnMaxIdleTime: time.Minute, TxOptions: defaults.TxOptions,
		}, 3},
		{"unlimited", scopedsql.EngineConfig{
			Driver: fakeDriverName, DSN: shared, MaxOpenConns: -1, MaxIdleConns: -1,
			ConnMaxLifetime: -1, TxOptions: defaults.TxOptions,
		}, 0},
		{"writer", scopedsql.EngineConfig{ // TxOptions is replaced whole, not merged
			Driver: fakeDriverName, DSN: shared, MaxOpenConns: 10, MaxIdleConns: 5,
			ConnMaxLifetime: time.Hour, TxOptions: &sql.TxOptions{},
		}, 10},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			got, err := e.Config(tc.engine)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Config = %+v (TxOptions %+v)\nwant     %+v (TxOptions %+v)", got, got.TxOptions, tc.want, tc.want.TxOptions)
			}
			if got.TxOptions == defaults.TxOptions {
				t.Error("the resolved TxOptions is the caller's pointer")
			}
			db, err := e.DB(tc.engine)
			if err != nil {
				t.Fatal(err)
			}
			if n := db.Stats().MaxOpenConnections; n != tc.wantMaxOpen {
				t.Errorf("MaxOpenConnections = %d, want %d", n, tc.wantMaxOpen)
			}
		})
	}
}

// cloneConfigs is a deep copy made by hand, independent of the code
// under test.
func cloneConfigs(defaults scopedsql.EngineConfig, m map[string]scopedsql.EngineConfig) (scopedsql.EngineConfig, map[string]scopedsql.EngineConfig) {
	clone := func(c scopedsql.EngineConfig) scopedsql.EngineConfig {
		if c.TxOptions != nil {
			o := *c.TxOptions
			c.TxOptions = &o
		}
		return c
	}
	out := make(map[string]scopedsql.EngineConfig, len(m))
	for k, v := range m {
		out[k] = clone(v)
	}
	return clone(defaults), out
}

func TestOpenNeverChangesOrKeepsTheCallersConfig(t *testing.T) {
	t.Parallel()
	defaults := scopedsql.EngineConfig{
		Driver: fakeDriverName, DSN: fakeDSN(t, "a"), MaxOpenConns: 4,
		TxOptions: &sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true},
	}
	engines := map[string]scopedsql.EngineConfig{
		"default": {MaxIdleConns: 1},
		"reports": {DSN: fakeDSN(t, "b"), TxOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted}},
		"batch":   {MaxOpenConns: -1},
	}
	wantDefaults, wantEngines := cloneConfigs(defaults, engines)

	e := openEngines(t, defaults, engines)

	if !reflect.DeepEqual(defaults, wantDefaults) || !reflect.DeepEqual(*defaults.TxOptions, *wantDefaults.TxOptions) {
		t.Errorf("defaults changed: %+v (TxOptions %+v)", defaults, defaults.TxOptions)
	}
	if !reflect.DeepEqual(engines, wantEngines) {
		t.Errorf("engines changed:\n got %+v\nwant %+v", engines, wantEngines)
	}
	// Nor does Open keep them: changing them now changes nothing.
	defaults.TxOptions.ReadOnly = false
	engines["reports"].TxOptions.Isolation = sql.LevelSerializable
	for name, want := range map[string]sql.TxOptions{
		"default": {Isolation: sql.LevelSerializable, ReadOnly: true},
		"reports": {Isolation: sql.LevelReadCommitted},
	} {
		got, err := e.Config(name)
		if err != nil {
			t.Fatal(err)
		}
		if *got.TxOptions != want {
			t.Errorf("%s: TxOptions %+v after the caller changed theirs, want %+v", name, *got.TxOptions, want)
		}
	}
}

func TestUnknownEngineErrorListsConfiguredNames(t *testing.T) {
	t.Parallel()
	dsn := fakeDSN(t, "a")
	e := openEngines(t, scopedsql.EngineConfig{Driver: fakeDriverName, DSN: dsn},
		map[string]scopedsql.EngineConfig{"reports": {}, "default": {}, "audit": {}})
	const list = `"reportz" (configured: "audit", "default", "reports")`

	_, err := e.DB("reportz")
	if !errors.Is(err, scopedsql.ErrUnknownEngine) || !strings.Contains(err.Error(), list) {
		t.Errorf("DB = %v, want ErrUnknownEngine ending in %s", err, list)
	}
	if _, err := e.Config("reportz"); !errors.Is(err, scopedsql.ErrUnknownEngine) {
		t.Errorf("Config = %v, want ErrUnknownEngine", err)
	}
	for name, f := range map[string]func(){
		"Tx":   func() { e.Tx("reportz") },
		"Conn": func() { e.Conn("reportz") },
	} {
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.Contains(p.(string), list) {
					t.Errorf("%s panicked with %v, want a message ending in %s", name, p, list)
				}
			}()
			f()
		}()
	}
	if got := e.Names(); !reflect.DeepEqual(got, []string{"audit", "default", "reports"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestOpenRequiresTheDefaultEngineUnlessTurnedOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		engines []string
		opts    []scopedsql.Option
		wantErr error
	}{
		{"missing default", []string{"reports", "audit"}, nil, scopedsql.ErrNoDefaultEngine},
		{"default present", []string{"default", "reports"}, nil, nil},
		{"turned off", []string{"reports"}, []scopedsql.Option{scopedsql.RequireDefault(false)}, nil},
		{"no engines at all", nil, []scopedsql.Option{scopedsql.RequireDefault(false)}, scopedsql.ErrNoEngines},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dsn := fakeDSN(t, "a")
			m := map[string]scopedsql.EngineConfig{}
			for _, n := range tc.engines {
				m[n] = scopedsql.EngineConfig{}
			}
			e, err := scopedsql.Open(dbtest.Ctx(t), scopedsql.EngineConfig{Driver: fakeDriverName, DSN: dsn}, m, tc.opts...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if _, opened := fake().counts(dsn); opened != 0 {
					t.Errorf("%d connections opened before failing", opened)
				}
				return
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpenPingFailureNamesTheEngineAndClosesTheOthers(t *testing.T) {
	t.Parallel()
	dsns := map[string]string{ // opened in name order: a, default, reports, z
		"a":       fakeDSN(t, "a"),
		"default": fakeDSN(t, "default"),
		"reports": fakeDSN(t, "unreachable"),
		"z":       fakeDSN(t, "z"),
	}
	m := map[string]scopedsql.EngineConfig{}
	for name, dsn := range dsns {
		m[name] = scopedsql.EngineConfig{DSN: dsn}
	}
	e, err := scopedsql.Open(dbtest.Ctx(t), scopedsql.EngineConfig{Driver: fakeDriverName}, m)
	if e != nil || !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), `engine "reports"`) {
		t.Fatalf("Open = %v, %v; want an error naming engine \"reports\" and wrapping %v", e, err, errUnreachable)
	}
	for name, wantOpened := range map[string]int{"a": 1, "default": 1, "reports": 1, "z": 0} {
		open, opened := fake().counts(dsns[name])
		if open != 0 || opened != wantOpened {
			t.Errorf("engine %s: %d connections open, %d ever opened; want 0 and %d", name, open, opened, wantOpened)
		}
	}
}

func TestOpenPingGivesUpAtTheContextDeadline(t *testing.T) {
	t.Parallel()
	dsn := fakeDSN(t, "silent")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := scopedsql.Open(ctx, scopedsql.EngineConfig{Driver: fakeDriverName},
		map[string]scopedsql.EngineConfig{"default": {DSN: dsn}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if open, _ := fake().counts(dsn); open != 0 {
		t.Errorf("%d connections left open", open)
	}
}

func TestOpenRejectsAnEngineWithoutDriver(t *testing.T) {
	t.Parallel()
	_, err := scopedsql.Open(dbtest.Ctx(t), scopedsql.EngineConfig{},
		map[string]scopedsql.EngineConfig{"default": {DSN: fakeDSN(t, "a")}})
	if err == nil || !strings.Contains(err.Error(), `engine "default": no Driver`) {
		t.Fatalf("Open = %v, want an error about engine \"default\" having no Driver", err)
	}
}

func TestEnginesCloseClosesEveryPoolOnce(t *testing.T) {
	t.Parallel()
	a, b := fakeDSN(t, "a"), fakeDSN(t, "b")
	e, err := scopedsql.Open(dbtest.Ctx(t), scopedsql.EngineConfig{Driver: fakeDriverName},
		map[string]scopedsql.EngineConfig{"default": {DSN: a}, "b": {DSN: b}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	for _, dsn := range []string{a, b} {
		if open, _ := fake().counts(dsn); open != 0 {
			t.Errorf("%s: %d connections open after Close", dsn, open)
		}
	}
	db, _ := e.DB("default")
	if err := db.Ping(); err == nil {
		t.Error("the pool still answers after Close")
	}
}

func TestEnginesOnRealServers(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		e := openEngines(t, scopedsql.EngineConfig{Driver: s.Driver, DSN: s.DSN, MaxOpenConns: 4},
			map[string]scopedsql.EngineConfig{
				"default":  {},
				"readonly": {TxOptions: &sql.TxOptions{ReadOnly: true}},
			})
		db, err := e.DB("default")
		if err != nil {
			t.Fatal(err)
		}
		table := dbtest.CreateIDTable(t, db, "scopedsql_engines")
		writes := scoped.New(e.Tx("default"))
		reads := scoped.New(e.Tx("readonly"))

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		w, err := writes.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.ExecContext(ctx, s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		r, err := reads.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ExecContext(ctx, s.InsertID(table), 2); err == nil {
			t.Error(`INSERT succeeded through engine "readonly"`)
		}
		if err := reads.Remove(ctx); err != nil { // a failed PostgreSQL transaction cannot commit
			t.Fatal(err)
		}
		if err := scope.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := dbtest.IDs(t, db, table); !reflect.DeepEqual(got, []int64{1}) {
			t.Errorf("ids = %v, want [1]", got)
		}
	})
}
