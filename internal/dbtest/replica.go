package dbtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Replicated is a primary and a hot standby that streams from it, each a
// [Cluster] of the test's own on a port of its own: the read replica of a
// production setup, made with pg_createcluster and pg_basebackup. Both
// are dropped when the test ends, failed or not, the standby first.
//
// Making one takes a few seconds: a test binary makes one and runs its
// replica tests as subtests of the test that made it.
type Replicated struct {
	Primary *Cluster
	Standby *Cluster
}

// NewReplicated makes a primary (wal_level=replica, PostgreSQL's default)
// and a hot standby from pg_basebackup with a replication slot of its own
// on the primary, so the primary keeps the WAL the standby still needs.
// It returns when the standby accepts connections. It skips or fails t as
// [NewCluster] does without SCOPED_TEST_PG_CLUSTER=1.
func NewReplicated(t testing.TB) *Replicated {
	t.Helper()
	primary := NewCluster(t)
	s := &Cluster{t: t, Version: primary.Version, Name: clusterName()}
	t.Cleanup(s.drop) // runs before the primary's drop
	var err error
	for attempt := 1; ; attempt++ {
		if s.Port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = s.makeStandby(primary); err == nil {
			break
		}
		s.drop()
		// A backup that failed before pg_createcluster adopted it.
		_ = os.RemoveAll(filepath.Join("/var/lib/postgresql", s.Version, s.Name))
		if attempt == 3 {
			t.Fatalf("make standby %s of %s: %v", s.Name, primary.Name, err)
		}
		s.Name = clusterName()
	}
	s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", s.Port)
	return &Replicated{Primary: primary, Standby: s}
}

// makeStandby makes s a base backup of primary that starts as a standby
// (-R: standby.signal and the primary_conninfo) and starts it. The backup
// is taken into the data directory first, with the primary's
// configuration files, and pg_createcluster then adopts it (it sets the
// port, the paths and the name): no initdb, which takes seconds here.
func (s *Cluster) makeStandby(primary *Cluster) error {
	data := filepath.Join("/var/lib/postgresql", s.Version, s.Name)
	if err := os.Mkdir(data, 0o700); err != nil {
		return err
	}
	asPostgres := func(cmd ...string) []string { return cmd }
	if os.Geteuid() == 0 {
		// The server runs as postgres and owns its data directory.
		if _, err := run("chown", "postgres:postgres", data); err != nil {
			return err
		}
		asPostgres = func(cmd ...string) []string { return append([]string{"runuser", "-u", "postgres", "--"}, cmd...) }
	}
	// The slot's name is the cluster's: unique, and a valid name.
	backup := asPostgres(filepath.Join("/usr/lib/postgresql", s.Version, "bin", "pg_basebackup"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", data, "-X", "stream", "-R", "-C", "-S", s.Name, "--checkpoint=fast")
	if _, err := run(backup[0], backup[1:]...); err != nil {
		return err
	}
	etc := filepath.Join("/etc/postgresql", primary.Version, primary.Name)
	for _, f := range []string{"postgresql.conf", "pg_hba.conf", "pg_ident.conf"} {
		cp := asPostgres("cp", filepath.Join(etc, f), filepath.Join(data, f))
		if _, err := run(cp[0], cp[1:]...); err != nil {
			return err
		}
	}
	if _, err := run("pg_createcluster", "--start-conf=manual", "--port", strconv.Itoa(s.Port), s.Version, s.Name); err != nil {
		return err
	}
	_, err := run("pg_ctlcluster", s.Version, s.Name, "start")
	return err
}

// SetApplyDelay sets the standby's recovery_min_apply_delay: it applies a
// commit only d after the primary made it, a replica that lags on demand.
// The standby reloads its configuration on its own time, so it returns
// once the setting is seen in effect: for zero (no delay), once the
// standby has replayed all the primary had written; for a second or more,
// once the standby holds back a commit the primary made after the call.
// A delay under a second is set and not awaited. It fails the test on
// error, or if the setting is not in effect within [Bound].
func (r *Replicated) SetApplyDelay(d time.Duration) {
	t := r.Standby.t
	t.Helper()
	r.Standby.psql(fmt.Sprintf("ALTER SYSTEM SET recovery_min_apply_delay = '%dms'", d.Milliseconds()))
	r.Standby.psql("SELECT pg_reload_conf()")
	deadline := time.Now().Add(Bound)
	for probe := ""; ; {
		switch {
		case d == 0:
			if probe == "" {
				probe = r.Primary.psql("SELECT pg_current_wal_insert_lsn()")
			}
			if r.Standby.psql("SELECT pg_last_wal_replay_lsn() >= '"+probe+"'") == "t" {
				return
			}
		case d >= time.Second:
			if probe == "" || r.Standby.psql("SELECT pg_last_wal_replay_lsn() >= '"+probe+"'") == "t" {
				// No probe yet, or the last one was applied at once: the
				// standby had not reloaded. A transaction with an id
				// writes a commit record.
				probe = r.Primary.psql("SELECT txid_current(), pg_current_wal_insert_lsn()")
				_, probe, _ = strings.Cut(probe, "|")
			}
			if r.Standby.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'startup' AND wait_event = 'RecoveryApplyDelay'") == "1" {
				return
			}
		default:
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby %s: recovery_min_apply_delay = %v not in effect within %v", r.Standby.Name, d, Bound)
		}
		time.Sleep(10 * time.Millisecond) // polling a server: no event to wait on
	}
}

// psql runs one statement on c's database test, failing the test on error.
func (c *Cluster) psql(sql string) string {
	c.t.Helper()
	out, err := c.query(sql)
	if err != nil {
		c.t.Fatalf("cluster %s: %v", c.Name, err)
	}
	return out
}

// query runs one statement on c's database test with psql, on a
// connection of its own, and returns its output, unaligned.
func (c *Cluster) query(sql string) (string, error) {
	out, err := run(filepath.Join("/usr/lib/postgresql", c.Version, "bin", "psql"), "-X", "-q", "-A", "-t",
		"-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", "test", "-c", sql)
	return strings.TrimSpace(string(out)), err
}

// CreateRowTable creates a fresh table (id int primary key, n int) named
// after prefix on the primary, the replica tests' rows, and returns its
// name once the standby has replayed it.
func (r *Replicated) CreateRowTable(t testing.TB, prefix string) string {
	t.Helper()
	table := Table(prefix)
	lsn, err := r.Primary.query("CREATE TABLE " + table + " (id int PRIMARY KEY, n int NOT NULL); SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	r.AwaitReplayed(t, position(lsn))
	return table
}
