#!/usr/bin/env bash
# instructions.sh BINARY BENCH...: instructions per operation of each
# benchmark of a test binary, counted by valgrind's callgrind rather than
# timed, so that a noisy machine gives the same figure every run. Each
# figure is the difference between runs of 300,000 and 100,000 iterations
# divided by 200,000 (what the benchmark's setup costs cancels out), with
# the garbage collector off (GOGC=off: its background work is scheduled by
# time, and would make the count vary) and one P.
#
#   go test -c -o /tmp/core.test . && bench/instructions.sh /tmp/core.test 'BenchmarkScopeNet/Net=none/Impl=scoped$'
set -euo pipefail
bin=$1
shift
count() {
  local out
  out=$(mktemp)
  GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$bin" -test.run '^$' -test.bench "$1" -test.benchtime "${2}x" >/dev/null 2>&1
  callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
  rm -f "$out"
}
for b in "$@"; do
  lo=$(count "$b" 100000)
  hi=$(count "$b" 300000)
  echo "$b $(((hi - lo) / 200000)) instructions/op"
done
