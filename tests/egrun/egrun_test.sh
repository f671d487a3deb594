#!/usr/bin/env bash
# egrun_test.sh EGRUN CASE - one integration case of egrun.
#
# Every sleeper gets a unique duration (sleep 10.<pid of this script>...), so
# "is anything left running" is a scan of /proc/*/cmdline for that marker,
# unaffected by other tests running at the same time. Timing checks are
# generous (the point is "the sleepers were stopped", not speed).
set -u
EGRUN=$1
CASE=$2
M=$$                         # marker
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL [$CASE]: $*" >&2; exit 1; }

# Processes whose command line contains $1 (excluding this script).
alive() {
    local n=0 f
    for f in /proc/[0-9]*/cmdline; do
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -q -- "$1"; then
            case "$f" in /proc/$$/*|/proc/$BASHPID/*) continue ;; esac
            n=$((n + 1))
        fi
    done
    echo "$n"
}
# Processes that are exactly `sleep $1`.
sleepers() {
    local n=0 f
    for f in /proc/[0-9]*/cmdline; do
        [ "$(tr '\0' ' ' 2>/dev/null <"$f")" = "sleep $1 " ] && n=$((n + 1))
    done
    echo "$n"
}
expect_none() {
    local n
    n=$(alive "$1")
    [ "$n" -eq 0 ] || { ps -eo pid,ppid,pgid,stat,args | grep -- "$1" >&2; fail "$n processes with '$1' left"; }
}
now_ms() { date +%s%3N; }
# run CMD...: runs egrun, sets rc, ms (wall time), and $T/out $T/err.
run() {
    local t0
    t0=$(now_ms)
    "$EGRUN" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    ms=$(( $(now_ms) - t0 ))
}
expect_rc() { [ "$rc" -eq "$1" ] || { cat "$T/err" >&2; fail "exit $rc, expected $1"; }; }
expect_fast() { [ "$ms" -lt "$1" ] || fail "took ${ms} ms, expected well under $1 ms"; }

case "$CASE" in
first_failure)
    run "sleep 10.$M" "sleep 0.1; exit 3" "sleep 10.$M"
    expect_rc 3
    expect_fast 5000
    expect_none "sleep 10.$M"
    grep -q "2:sleep  *failed (first)" "$T/err" || fail "summary: $(cat "$T/err")"
    [ "$(grep -c 'stopped by egrun (TERM)' "$T/err")" -eq 2 ] || fail "summary: $(cat "$T/err")"
    ;;
setsid_grandchild)
    # A grandchild that leaves the group and the session, then a failure.
    run "setsid sleep 100.$M & sleep 0.2; exit 4" "sleep 100.$M"
    expect_rc 4
    expect_fast 8000
    expect_none "sleep 100.$M"
    # A double fork, with egrun's run ending in success.
    run "( ( sleep 100.$M & ) & ); sleep 0.1; exit 0"
    expect_rc 0
    expect_none "sleep 100.$M"
    ;;
ignore_term)
    run --grace 200ms "trap '' TERM; sleep 100.$M" "sleep 0.2; exit 5"
    expect_rc 5
    expect_fast 8000
    expect_none "sleep 100.$M"
    grep -q "stopped by egrun (KILL)" "$T/err" || fail "summary: $(cat "$T/err")"
    ;;
sigint)
    # Three commands; SIGINT to egrun: exit 130, every group gone.
    "$EGRUN" "sleep 100.$M" "sleep 100.$M" "sleep 100.$M" >"$T/out" 2>"$T/err" &
    pid=$!
    for _ in $(seq 100); do [ "$(sleepers "100.$M")" -eq 3 ] && break; sleep 0.05; done
    [ "$(sleepers "100.$M")" -eq 3 ] || fail "commands did not start"
    kill -INT "$pid"
    wait "$pid"; rc=$?
    expect_rc 130
    expect_none "sleep 100.$M"
    # Commands that ignore the forwarded SIGINT: a second SIGINT during the
    # 30 s grace kills them at once.
    "$EGRUN" --grace 30s "trap '' INT; sleep 100.$M" "trap '' INT; sleep 100.$M" \
        "trap '' INT; sleep 100.$M" >"$T/out" 2>"$T/err" &
    pid=$!
    for _ in $(seq 100); do [ "$(sleepers "100.$M")" -eq 3 ] && break; sleep 0.05; done
    [ "$(sleepers "100.$M")" -eq 3 ] || fail "commands did not start"
    t0=$(now_ms)
    kill -INT "$pid"
    sleep 0.5
    kill -0 "$pid" 2>/dev/null || fail "egrun ended before the grace"
    kill -INT "$pid"
    wait "$pid"; rc=$?
    ms=$(( $(now_ms) - t0 ))
    expect_rc 130
    expect_fast 15000
    expect_none "sleep 100.$M"
    grep -q "stopped by egrun (KILL)" "$T/err" || fail "summary: $(cat "$T/err")"
    ;;
jobs_limit)
    log=$T/log
    c() { echo "echo start $1 >>$log; sleep 0.$2; echo end $1 >>$log; exit $3"; }
    run -j 2 "$(c 1 3 0)" "$(c 2 2 0)" "$(c 3 3 0)" "$(c 4 1 0)" "$(c 5 2 0)"
    expect_rc 0
    [ "$(grep -c start "$log")" -eq 5 ] || fail "not all ran: $(cat "$log")"
    awk '/start/{n++; if (n>max) max=n} /end/{n--} END{exit max>2}' "$log" || fail "more than 2 at once: $(cat "$log")"
    # After a failure, no queued command starts.
    : >"$log"
    run -j 2 "$(c 1 1 7)" "$(c 2 5 0)" "$(c 3 1 0)" "$(c 4 1 0)" "$(c 5 1 0)"
    expect_rc 7
    grep -q "start 3\|start 4\|start 5" "$log" && fail "a queued command started: $(cat "$log")"
    [ "$(grep -c 'never started' "$T/err")" -eq 3 ] || fail "summary: $(cat "$T/err")"
    ;;
timeout)
    run --timeout 300ms "sleep 10.$M"
    expect_rc 124
    [ "$ms" -ge 250 ] || fail "timed out after ${ms} ms, before 300 ms"
    expect_fast 5000
    expect_none "sleep 10.$M"
    ;;
success_first)
    run --success first "sleep 0.2; exit 0" "sleep 10.$M"
    expect_rc 0
    [ "$ms" -ge 150 ] || fail "ended after ${ms} ms"
    expect_fast 5000
    expect_none "sleep 10.$M"
    grep -q "ok (first)" "$T/err" || fail "summary: $(cat "$T/err")"
    # The first to end decides: a failure still fails the run.
    run --success first "sleep 0.1; exit 6" "sleep 10.$M"
    expect_rc 6
    expect_none "sleep 10.$M"
    ;;
long_lines)
    gen() { echo "i=0; while [ \$i -lt 10000 ]; do printf '$1%0400d\n' \$i; i=\$((i+1)); done"; }
    run --names aa,bb "$(gen A)" "$(gen B)"
    expect_rc 0
    [ "$(wc -l <"$T/out")" -eq 20000 ] || fail "$(wc -l <"$T/out") lines"
    bad=$(grep -Evc '^(aa \| A|bb \| B)[0-9]{400}$' "$T/out")
    [ "$bad" -eq 0 ] || fail "$bad lines cut or mis-prefixed"
    [ "$(grep -c '^aa | A' "$T/out")" -eq 10000 ] || fail "aa lines"
    # A last line without a newline is flushed whole, and --no-prefix.
    run --no-prefix "printf 'one\\ntwo'" 
    [ "$(cat "$T/out")" = "$(printf 'one\ntwo')" ] || fail "partial line: $(od -c "$T/out")"
    ;;
segv_notfound)
    run 'kill -SEGV $$'
    expect_rc 139
    run "no_such_command_$M"
    expect_rc 127
    run "$T"     # a directory: cannot execute
    expect_rc 126
    ;;
json_joblog)
    run --json --joblog "$T/jl" --names ok,bad,slow "true" "sleep 0.2; exit 9" "sleep 10.$M"
    expect_rc 9
    tail -n 1 "$T/out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["exit_status"] == 9 and d["reason"] == "failure" and d["first"] == 2, d
c = {x["name"]: x for x in d["commands"]}
assert c["ok"]["end"] == "ok" and c["ok"]["status"] == 0, c
assert c["bad"]["end"] == "failed" and c["bad"]["status"] == 9 and c["bad"]["first"], c
assert c["slow"]["end"] == "stopped" and c["slow"]["status"] == 143, c
assert c["slow"]["signal"] == "SIGTERM", c
assert 0.1 < c["bad"]["duration"] < 10, c
' || fail "json: $(tail -n 1 "$T/out")"
    python3 - "$T/jl" <<'PY' || fail "joblog: $(cat "$T/jl")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
assert [r["name"] for r in rows] == ["ok", "bad", "slow"], rows
assert [r["end"] for r in rows] == ["ok", "failed", "stopped"], rows
assert [r["status"] for r in rows] == ["0", "9", "143"], rows
assert [r["first"] for r in rows] == ["no", "yes", "no"], rows
assert rows[1]["command"] == "sleep 0.2; exit 9", rows
assert float(rows[0]["start"]) > 1e9 and float(rows[1]["duration"]) > 0.1, rows
PY
    expect_none "sleep 10.$M"
    ;;
usage)
    for args in "--bogus x" "--grace 5x x" "--timeout -1 x" "-j two x" "--signal FOO x" \
                "--success some x" "--color maybe x" "--stdin 3 x" "" "--names a,b x"; do
        # shellcheck disable=SC2086
        run $args
        expect_rc 125
        [ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$args': not one line: $(cat "$T/err")"
    done
    for d in 250ms 5s 2m 1.5 0; do
        run --no-summary --grace "$d" true
        expect_rc 0
    done
    run --help
    expect_rc 0
    for o in --jobs --timeout --grace --signal --success --names --prefix --no-prefix \
             --color --joblog --json --stdin --no-summary --help --version; do
        grep -q -- "$o" "$T/out" || fail "--help lacks $o"
        grep -q -- "$(echo "$o" | sed 's/-/\\\\-/g')" "$(dirname "$0")/../../tools/egrun/egrun.1" ||
            fail "egrun.1 lacks $o"
    done
    run --version
    expect_rc 0
    grep -q "^egrun (errgroup) [0-9]*\.[0-9]*\.[0-9]*$" "$T/out" || fail "version: $(cat "$T/out")"
    # stdin goes to the command --stdin names, /dev/null to the others.
    echo hello | "$EGRUN" --no-summary --names a,b --stdin 2 cat cat >"$T/out" 2>"$T/err"
    [ "$(cat "$T/out")" = "b | hello" ] || fail "stdin: $(cat "$T/out")"
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok [$CASE]"
