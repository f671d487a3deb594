#!/usr/bin/env bash
# uv_fanout_test.sh EXE CURL WORKDIR - drives the uv_fanout server with real
# curl clients: a normal request, a client that gives up mid-request (the
# backends must see their connections closed), and 200 concurrent requests
# (none lost, every answer right). Prints the server's worst loop lag.
set -u
exe=$1 curl=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; exit 1; }

"$exe" >"$work/server.out" 2>"$work/server.err" &
pid=$!
port=
for _ in $(seq 1 200); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "server exited: $(cat "$work/server.err")"
    sleep 0.05
done
[ -n "$port" ] || fail "server did not start"
base="http://127.0.0.1:$port"
echo "server pid $pid on port $port"

stat() { "$curl" -s --max-time 10 "$base/stats" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# 1. A normal request.
got=$("$curl" -s --max-time 10 "$base/fanout/42")
[ "$got" = "42 A:ok /A/42 B:ok /B/42 C:ok /C/42" ] || fail "normal request: '$got'"
echo "normal request: ok"

# 2. A client that disconnects mid-request: the server cancels the group,
# which closes the three backend connections. The client goes away (ended
# by its PID) once all three backends hold its calls (the backends take
# 60 s), so the order of events does not depend on the machine's speed.
"$curl" -s --max-time 50 "$base/slow/1" >/dev/null &
client=$!
pending=0
for _ in $(seq 1 600); do
    pending=$(stat slow_pending)
    [ "${pending:-0}" -ge 3 ] && break
    kill -0 "$client" 2>/dev/null || fail "slow request ended before its backends were called"
    sleep 0.05
done
[ "${pending:-0}" -eq 3 ] || fail "slow backends hold $pending calls, expected 3"
kill "$client"
wait "$client" 2>/dev/null
aborted=0
for _ in $(seq 1 600); do
    aborted=$(stat backend_aborted)
    [ "${aborted:-0}" -ge 3 ] && break
    sleep 0.05
done
[ "${aborted:-0}" -eq 3 ] || fail "backends saw $aborted aborted connections, expected 3"
[ "$(stat cancelled)" = 1 ] || fail "cancelled=$(stat cancelled), expected 1"
echo "client disconnect: group cancelled, backends saw 3 connections closed"

# 3. 200 concurrent requests from one curl running them in parallel, twice:
# the first round also starts the pool's threads, the second finds them.
for round in 1 2; do
    rm -rf "$work/out" && mkdir -p "$work/out"
    "$curl" -s --no-progress-meter --max-time 50 --parallel --parallel-immediate --parallel-max 200 \
        "$base/fanout/[1-200]" -o "$work/out/#1" || fail "parallel curl exit $?"
    bad=0
    for i in $(seq 1 200); do
        want="$i A:ok /A/$i B:ok /B/$i C:ok /C/$i"
        if [ ! -f "$work/out/$i" ] || [ "$(cat "$work/out/$i")" != "$want" ]; then
            bad=$((bad + 1))
            [ "$bad" -le 3 ] && echo "request $i: '$(cat "$work/out/$i" 2>/dev/null)'"
        fi
    done
    [ "$bad" -eq 0 ] || fail "round $round: $bad of 200 concurrent requests lost or wrong"
    want=$((1 + 200 * round))
    [ "$(stat answered)" = "$want" ] || fail "answered=$(stat answered), expected $want"
    lag=$("$curl" -s "$base/stats?reset" | tr ' ' '\n' | sed -n 's/^max_lag_us=//p')
    echo "200 concurrent requests, round $round: all answered, all right;" \
         "worst loop lag $lag us"
done

echo "stats: $("$curl" -s "$base/stats")"
kill "$pid"
wait "$pid"
status=$?
pid=
[ "$status" -eq 0 ] || fail "server exit status $status"
[ -s "$work/server.err" ] && fail "server stderr: $(head -c 2000 "$work/server.err")"
echo "PASS"
