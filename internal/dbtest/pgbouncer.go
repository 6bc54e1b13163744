package dbtest

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pgbouncerPath is where Debian's pgbouncer package installs it (.ci/pgbouncer).
const pgbouncerPath = "/usr/sbin/pgbouncer"

// PgBouncer starts pgbouncer in transaction pooling mode between the test
// and s (a PostgreSQL server), on a free port, with a config written for
// the test, and stops it when t ends. Clients log in as anyone without a
// password (auth_type any); pgbouncer logs in to PostgreSQL as user ("":
// s's user), into s's database, with at most poolSize server connections.
// It returns s with its DSN pointing at pgbouncer.
//
// Without pgbouncer the test skips, or fails under SCOPED_TEST_REQUIRE_DB
// (.ci/pgbouncer installs it).
func PgBouncer(t testing.TB, s Server, user string, poolSize int) Server {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = pgbouncerPath
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("pgbouncer is not installed but %s requires the database tests: run .ci/pgbouncer", RequireEnv)
		}
		t.Skip("pgbouncer is not installed: run .ci/pgbouncer (apt-get install pgbouncer)")
	}
	u, err := url.Parse(s.DSN)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" {
		t.Fatalf("PgBouncer needs a postgres:// DSN, got %q", s.DSN)
	}
	if user == "" {
		user = u.User.Username()
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	listen, err := freePort()
	if err != nil {
		t.Fatal(err)
	}

	dir := bouncerDir(t)
	cfg := fmt.Sprintf(`[databases]
%[1]s = host=%[2]s port=%[3]s dbname=%[1]s user=%[4]s pool_size=%[5]d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[6]d
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = %[5]d
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = %[7]s
pidfile = %[8]s
`, dbname, host, port, user, poolSize, listen, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	ini := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(ini, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{ini}
	if os.Geteuid() == 0 {
		// pgbouncer refuses to run as root.
		args = []string{"-u", "postgres", ini}
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	up := make(chan struct{})
	read := make(chan []string, 1)
	go func() {
		var lines []string
		isUp := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !isUp && strings.Contains(sc.Text(), "process up") {
				isUp = true
				close(up)
			}
		}
		read <- lines
	}()
	exited := false
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // shut down at once, closing clients
		lines := <-read
		if err := cmd.Wait(); err != nil && !isSignalExit(err) && !exited {
			t.Errorf("pgbouncer: %v\n%s", err, strings.Join(lines, "\n"))
		}
	})
	select {
	case <-up:
	case lines := <-read:
		read <- lines
		exited = true
		t.Fatalf("pgbouncer exited before it was up:\n%s", strings.Join(lines, "\n"))
	case <-time.After(Bound):
		t.Fatalf("pgbouncer not up after %v", Bound)
	}
	bu := *u
	bu.Host = fmt.Sprintf("127.0.0.1:%d", listen)
	bu.User = url.User(user)
	return Server{Name: s.Name, Driver: s.Driver, DSN: bu.String()}
}

// bouncerDir is a directory for pgbouncer's files that the user it runs
// as may write.
func bouncerDir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return t.TempDir()
	}
	// t.TempDir's parent is private to root: a directory of its own.
	if _, err := user.Lookup("postgres"); err != nil {
		t.Fatalf("pgbouncer runs as postgres when the tests run as root: %v", err)
	}
	dir, err := os.MkdirTemp("", "scoped-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func isSignalExit(err error) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && (ws.Signaled() || ws.ExitStatus() == 0)
}
