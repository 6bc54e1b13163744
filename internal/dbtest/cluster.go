package dbtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ClusterEnv enables the tests that run a PostgreSQL cluster of their own
// ([NewCluster]). Such tests stop, crash and restart their server, which
// must never happen to the shared server of SCOPED_TEST_POSTGRES_DSN, so
// they need the right to create clusters on this machine (postgresql-common:
// pg_createcluster, pg_ctlcluster, pg_dropcluster; run as root or as the
// postgres user), and ask for it explicitly.
const ClusterEnv = "SCOPED_TEST_PG_CLUSTER"

// clusterPrefix starts the name of every cluster [NewCluster] creates,
// followed by the creating process's id, so that a cluster left behind by
// a test binary that was killed (its cleanups never ran) can be recognised
// and dropped by the next one.
const clusterPrefix = "scoped_test_"

// StopMode is how the server of a [Cluster] stops (pg_ctl's -m).
type StopMode string

const (
	// Fast rolls back the transactions in progress, ends every session
	// (SQLSTATE 57P01 to their clients), writes a checkpoint and exits:
	// what a restart for maintenance does.
	Fast StopMode = "fast"
	// Immediate kills every server process without a checkpoint: a crash.
	// The next start replays the WAL (crash recovery).
	Immediate StopMode = "immediate"
)

// Cluster is a PostgreSQL cluster of one test, on a port of its own, with
// trust authentication on 127.0.0.1, that the test may stop, crash and
// restart. It is dropped when the test ends, failed or not.
type Cluster struct {
	Version string // major version, e.g. "15"
	Name    string // the cluster's name for pg_ctlcluster
	Port    int
	DSN     string // postgres://postgres@127.0.0.1:<port>/test?sslmode=disable

	t  testing.TB
	mu sync.Mutex // one control command at a time
}

// NewCluster creates and starts a cluster of t's own with an empty
// database "test", and drops it (stopping the server) when t ends. Without
// SCOPED_TEST_PG_CLUSTER=1 it skips t saying how to enable it, or fails it
// under SCOPED_TEST_REQUIRE_DB=1. It first drops the clusters that test
// processes no longer running left behind.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	if os.Getenv(ClusterEnv) == "" {
		const how = "set %s=1 to enable it (it runs pg_createcluster, pg_ctlcluster and pg_dropcluster of postgresql-common, as root or the postgres user)"
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%s is not set but %s requires the database tests: "+how, ClusterEnv, RequireEnv, ClusterEnv)
		}
		t.Skipf("integration test with a PostgreSQL cluster of its own, which it stops and crashes: "+how, ClusterEnv)
	}
	version, err := newestPostgres()
	if err != nil {
		t.Fatal(err)
	}
	dropAbandonedClusters(t)
	c := &Cluster{t: t, Version: version, Name: clusterName()}
	// Registered first: a cluster half created, or one whose start failed,
	// is dropped too.
	t.Cleanup(c.drop)
	// A free port can be taken by someone else before the server listens
	// on it: try another.
	for attempt := 1; ; attempt++ {
		if c.Port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		// --auth=trust: initdb writes a pg_hba.conf that trusts local and
		// 127.0.0.1 connections, and pg_createcluster leaves it so.
		// --start-conf=manual: no init script ever starts it.
		if _, err = run("pg_createcluster", "--quiet", "--start-conf=manual", "--port", strconv.Itoa(c.Port),
			c.Version, c.Name, "--", "--auth=trust"); err != nil {
			t.Fatalf("create cluster %s: %v", c.Name, err)
		}
		if _, err = run("pg_ctlcluster", c.Version, c.Name, "start"); err == nil {
			break
		}
		c.drop()
		if attempt == 3 {
			t.Fatalf("start cluster %s: %v", c.Name, err)
		}
		c.Name = clusterName()
	}
	createdb := filepath.Join("/usr/lib/postgresql", c.Version, "bin", "createdb")
	if _, err := run(createdb, "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "test"); err != nil {
		t.Fatalf("create database test on cluster %s: %v", c.Name, err)
	}
	c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", c.Port)
	return c
}

// Restart stops the server in mode and starts it again, returning when it
// accepts connections. Like Stop and Start, it fails the test on error, so
// it is called from the test's goroutine.
func (c *Cluster) Restart(mode StopMode) {
	c.t.Helper()
	c.control("restart", "-m", string(mode))
}

// Stop stops the server in mode.
func (c *Cluster) Stop(mode StopMode) {
	c.t.Helper()
	c.control("stop", "-m", string(mode))
}

// Start starts the stopped server, returning when it accepts connections
// (after crash recovery, if it was stopped Immediate).
func (c *Cluster) Start() {
	c.t.Helper()
	c.control("start")
}

func (c *Cluster) control(action string, args ...string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := run("pg_ctlcluster", append([]string{c.Version, c.Name, action}, args...)...); err != nil {
		c.t.Fatalf("%s cluster %s: %v", action, c.Name, err)
	}
}

// drop stops the server (fast) and removes the cluster: its data, its
// configuration and its log.
func (c *Cluster) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !clusterExists(c.Version, c.Name) {
		return
	}
	if _, err := run("pg_dropcluster", "--stop", c.Version, c.Name); err != nil {
		c.t.Errorf("drop cluster %s: %v", c.Name, err)
	}
}

func clusterName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return clusterPrefix + strconv.Itoa(os.Getpid()) + "_" + hex.EncodeToString(b[:])
}

// newestPostgres returns the newest PostgreSQL major version installed
// the Debian way (/usr/lib/postgresql/<version>/bin/initdb).
func newestPostgres() (string, error) {
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestN := "", -1
	for _, p := range initdbs {
		v := filepath.Base(filepath.Dir(filepath.Dir(p)))
		if n, err := strconv.Atoi(v); err == nil && n > bestN {
			best, bestN = v, n
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s: no PostgreSQL server installed under /usr/lib/postgresql (the postgresql-NN package)", ClusterEnv)
	}
	return best, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// clusters returns "<version> <name>" of every cluster on the machine.
func clusters() ([]string, error) {
	out, err := run("pg_lsclusters", "--no-header")
	if err != nil {
		return nil, err
	}
	var list []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			list = append(list, f[0]+" "+f[1])
		}
	}
	return list, nil
}

func clusterExists(version, name string) bool {
	list, err := clusters()
	return err != nil || slices.Contains(list, version+" "+name)
}

var abandoned = regexp.MustCompile(`^(\S+) ` + clusterPrefix + `(\d+)_[0-9a-f]+$`)

// dropAbandonedClusters drops the clusters of this package whose creating
// process has ended without dropping them (killed by a test timeout, or
// by hand).
func dropAbandonedClusters(t testing.TB) {
	t.Helper()
	list, err := clusters()
	if err != nil {
		t.Fatal(err)
	}
	for _, vn := range list {
		m := abandoned.FindStringSubmatch(vn)
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[2]); processRunning(pid) {
			continue
		}
		version, name, _ := strings.Cut(vn, " ")
		t.Logf("dropping cluster %s %s, left behind by process %s", version, name, m[2])
		if _, err := run("pg_dropcluster", "--stop", version, name); err != nil {
			t.Errorf("drop abandoned cluster %s: %v", name, err)
		}
	}
}

func processRunning(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// run runs a command, bounded by [Bound], and returns its output; the
// error includes the output.
func run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// pg_ctlcluster leaves the server, a child that keeps no pipe of
	// ours open; should one keep it, Wait gives up on it.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}
