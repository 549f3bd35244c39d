#!/usr/bin/env bash
# Starts the MongoDB stand-in (server.py) in the background and prints its URI on stdout.
#
#   export EDA_TEST_MONGO_URI="$(bash tests/mongo-standin/start.sh)"        # a free port
#   export EDA_TEST_MONGO_URI="$(bash tests/mongo-standin/start.sh 27999)"  # a given port
#   bash tests/mongo-standin/start.sh --stop [PORT]                         # stop it again
#   bash tests/mongo-standin/start.sh --selftest                            # test the stand-in
#
# Idempotent: a stand-in this script already started for the same PORT (or the same "free
# port" instance) that still answers is reused. The Python venv is built once from the pinned
# requirements.txt and rebuilt when that file or the Python version changes. Everything else
# goes to stderr; any failure exits non-zero with the reason and the server log's tail.
#
# Environment (all optional):
#   PYTHON                 interpreter to build the venv with (default python3, needs >= 3.8)
#   MONGO_STANDIN_VENV     venv directory (default /tmp/eda-mongo-standin-venv)
#   MONGO_STANDIN_STATE    pid/port/log directory (default /tmp/eda-mongo-standin)
#   MONGO_STANDIN_QUIET=1  do not log every command to the server log
#   MONGO_STANDIN_WAIT     seconds to wait for the server to answer (default 30)
#   MONGO_STANDIN_ARGS     extra server.py flags, e.g. "--throttle-every 3" (Cosmos-style 16500
#                          errors); an instance started with other flags is restarted
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
venv="${MONGO_STANDIN_VENV:-/tmp/eda-mongo-standin-venv}"
state_root="${MONGO_STANDIN_STATE:-/tmp/eda-mongo-standin}"
wait_secs="${MONGO_STANDIN_WAIT:-30}"

die() {
    echo "mongo-standin/start.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "mongo-standin/start.sh: $*" >&2; }

stop=0
selftest=0
if [[ "${1:-}" == "--stop" ]]; then
    stop=1
    shift
elif [[ "${1:-}" == "--selftest" ]]; then
    selftest=1
    shift
fi
port="${1:-0}"
if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((10#$port > 65535)); then
    die "PORT must be a number 0-65535, not '$port'"
fi
port=$((10#$port))
[[ $# -le 1 ]] || die "usage: start.sh [--stop|--selftest] [PORT]"

key="$port"
((port == 0)) && key="auto"
state="$state_root/$key"
mkdir -p "$state"
# One start/stop per instance at a time (the lock is not passed on to the server).
exec 8>"$state/lock"
flock -w 900 8 || die "timed out waiting for another start.sh on port '$key'"
pidfile="$state/pid"
portfile="$state/port"
logfile="$state/server.log"
fpfile="$state/fingerprint"
extra="${MONGO_STANDIN_ARGS:-}"

alive() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

uri_for() { echo "mongodb://127.0.0.1:$1/?directConnection=true"; }

# A real round trip through pymongo (handshake + ping), not just an open port.
answers() {
    "$venv/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, pymongo
c = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true",
                        serverSelectionTimeoutMS=1500, connectTimeoutMS=1500)
try:
    assert c.admin.command("ping")["ok"] == 1
    assert c.admin.command("buildInfo")["gitVersion"] == "mongo-standin"
finally:
    c.close()
EOF
}

if ((stop)); then
    if alive; then
        pid="$(cat "$pidfile")"
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && die "stand-in pid $pid did not stop"
        say "stopped pid $pid"
    else
        say "no running stand-in for port '$key'"
    fi
    rm -f "$pidfile" "$portfile"
    exit 0
fi

# --- the venv --------------------------------------------------------------------------------
command -v "$python" >/dev/null || die "no '$python' on PATH (set PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "$python is older than 3.8"
stamp="$(
    {
        cat "$here/requirements.txt"
        "$python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"
# One builder at a time: concurrent callers wait here instead of racing on the same venv.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock -w 600 9 || die "timed out waiting for another start.sh to build $venv"
if [[ "$(cat "$venv/.standin-stamp" 2>/dev/null)" != "$stamp" ]] ||
    ! "$venv/bin/python" -c 'import mongomock, pymongo, bson' 2>/dev/null; then
    say "building venv $venv from requirements.txt"
    "$python" -m venv --clear "$venv" || die "python -m venv failed (Debian: apt-get install python3-venv)"
    installed=0
    for attempt in 1 2 3; do
        if PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$venv/bin/python" -m pip install --quiet --timeout 60 -r "$here/requirements.txt" >&2; then
            installed=1
            break
        fi
        say "pip install failed (attempt $attempt of 3)"
        sleep $((attempt * 5))
    done
    ((installed)) || die "pip install -r $here/requirements.txt failed 3 times"
    "$venv/bin/python" -c 'import mongomock, pymongo, bson' || die "venv imports fail after install"
    echo "$stamp" >"$venv/.standin-stamp"
fi
exec 9>&-

if ((selftest)); then
    "$venv/bin/python" "$here/selftest.py"
    exit $?
fi

# What a running instance must match to be reused: this server.py, these deps, these flags.
fingerprint="$(
    {
        cat "$here/server.py"
        echo "$stamp"
        echo "$extra"
    } | sha256sum | cut -d' ' -f1
)"

# --- reuse a running one ---------------------------------------------------------------------
if alive && [[ -s "$portfile" ]] && [[ "$(cat "$fpfile" 2>/dev/null)" == "$fingerprint" ]] &&
    answers "$(cat "$portfile")"; then
    say "reusing stand-in pid $(cat "$pidfile") on port $(cat "$portfile")"
    uri_for "$(cat "$portfile")"
    exit 0
fi
if alive; then
    pid="$(cat "$pidfile")"
    say "stand-in pid $pid does not answer or is another version/flags; stopping it"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
fi
rm -f "$pidfile" "$portfile"

if ((port != 0)) && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use by another process"
fi

# --- start -----------------------------------------------------------------------------------
args=(--host 127.0.0.1 --port "$port" --port-file "$portfile")
[[ "${MONGO_STANDIN_QUIET:-}" == "1" ]] && args+=(--quiet)
if [[ -n "$extra" ]]; then
    read -r -a extra_args <<<"$extra"
    args+=("${extra_args[@]}")
fi
echo "$fingerprint" >"$fpfile"
nohup "$venv/bin/python" -u "$here/server.py" "${args[@]}" \
    </dev/null >"$logfile" 2>&1 8>&- 9>&- &
echo $! >"$pidfile"
pid="$(cat "$pidfile")"

deadline=$((SECONDS + wait_secs))
while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 40 "$logfile" >&2 || true
        rm -f "$pidfile"
        die "the stand-in exited during start-up (log: $logfile)"
    fi
    if [[ -s "$portfile" ]] && answers "$(cat "$portfile")"; then
        break
    fi
    if ((SECONDS >= deadline)); then
        tail -n 40 "$logfile" >&2 || true
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        die "the stand-in did not answer within ${wait_secs}s (log: $logfile)"
    fi
    sleep 0.2
done

say "stand-in pid $pid listening on port $(cat "$portfile") (log: $logfile)"
uri_for "$(cat "$portfile")"
