// Package callcases is the table of call cases that scopedgrpc's and
// scopedconnect's tests both run against PostgreSQL (stream kinds ×
// Manual/Autocommit × outcomes), and the handler side and checks around
// it, so that both adapters are held to one outcome per case. It is
// internal to the root module: the adapters' tests import it as they do
// internal/dbtest, and no user can.
package callcases

// Code is a status code in gRPC's numbering, which connect's shares (0 is
// OK); each adapter's test converts it to its own type. The kit cannot
// name grpc's or connect's types: the root module requires neither.
type Code uint32

// The codes the cases end with.
const (
	OK                 Code = 0
	Canceled           Code = 1
	FailedPrecondition Code = 9
	Aborted            Code = 10
	Internal           Code = 13
)

// Case is a call whose client sends Cmds (one message each on a client
// stream, joined by commas in the request of a unary or server-streaming
// call) and what must come of it in Manual or Autocommit mode: the code
// and text the server ended the call with, the committed rows and the
// unit hooks that ran.
type Case struct {
	Name  string
	Auto  bool
	Cmds  []string // insert:N, commit (by hand), send, error, panic, wait (until the client cancels)
	Code  Code
	Text  string
	Rows  []int64
	Hooks []string
}

// Cases are the cases both adapters run; each adds those only it runs.
// An insert of 1000001 fails the COMMIT, one of a negative id fails it
// with a serialization failure (dbtest.CreateCommitFailureTable).
var Cases = []Case{
	{"manual/ok", false, []string{"insert:1", "send", "insert:2", "send"}, OK, "", nil, []string{"rollback"}},
	{"auto/ok", true, []string{"insert:1", "send", "insert:2", "send"}, OK, "", []int64{1, 2}, []string{"commit"}},
	{"manual/commit", false, []string{"insert:1", "send", "commit"}, OK, "", []int64{1}, []string{"commit"}},
	{"manual/commit/more/error", false, []string{"insert:1", "commit", "send", "insert:2", "error"}, FailedPrecondition, "handler", []int64{1}, nil},
	{"auto/commit/more/error", true, []string{"insert:1", "commit", "send", "insert:2", "error"}, FailedPrecondition, "handler", []int64{1}, nil},
	{"auto/panic", true, []string{"insert:1", "send", "panic"}, Internal, "recovered", nil, []string{"rollback"}},
	{"auto/commit fails", true, []string{"insert:1000001", "send"}, Internal, "not saved", nil, []string{"rollback"}},
	{"auto/serialization fails", true, []string{"insert:-1", "send"}, Aborted, "retry", nil, []string{"rollback"}},
	{"auto/commit/more/commit fails", true, []string{"insert:1", "commit", "insert:-2", "send"}, Internal, "part of", []int64{1}, nil},
	{"manual/commit/more/cancel", false, []string{"insert:1", "commit", "insert:2", "send", "wait"}, OK, "", []int64{1}, nil},
	{"auto/commit/more/cancel", true, []string{"insert:1", "commit", "insert:2", "send", "wait"}, Canceled, "had not committed", []int64{1}, nil},
	{"auto/cancel", true, []string{"insert:1", "send", "wait"}, Canceled, "had not committed", nil, []string{"rollback"}},
}
