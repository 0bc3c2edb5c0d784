#!/bin/bash
# A throw-away S3 endpoint for the cloud tests: a single-node Ceph cluster
# (one mon, one memstore OSD, no mgr, no cephx) and a RADOS Gateway, all on
# 127.0.0.1 with free ports, all state in one directory.
#
#   rgw.sh start DIR [OWNER_PID]   start in DIR (created), print the client
#                                  environment as shell assignments (also kept
#                                  in DIR/env), return with the daemons
#                                  running.  With OWNER_PID, a watchdog stops
#                                  them once that process is gone, so a killed
#                                  test leaves nothing behind.
#   rgw.sh stop DIR                stop what `start DIR` started
#   rgw.sh run [CMD ARGS...]       start in a temporary directory, run CMD
#                                  with the environment set (or, without CMD,
#                                  print it and wait for Ctrl-C), then stop
#                                  and clean up, also on INT/TERM
#
# The environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION, RGW_BUCKET (an empty bucket that exists), RGW_PID, RGW_S3CFG
# (an s3cmd configuration for the gateway: s3cmd -c "$RGW_S3CFG"); variables
# that would override them (AWS_ENDPOINT_URL_S3, AWS_PROFILE, ...) unset.
# RGW_MEMSTORE_BYTES sets how much the store holds (default 2 GiB, kept in
# RAM; writes fail once it is about 95% full).
# Exit status: 0, 1 (failed to start: the reason and the daemon's log tail on
# stderr), 77 (Ceph or botocore not installed).
#
# The settings are what Debian 12's Ceph 16 needs to start reliably as one
# node: memstore, pool size 1, chooseleaf type 0, and no class or crush
# updates on OSD start (without those, starts often fail with "wrong fsid").
set -eu

RGW_ACCESS_KEY=${RGW_ACCESS_KEY:-TOPCOWTESTACCESSKEY1}
RGW_SECRET_KEY=${RGW_SECRET_KEY:-topcow/test+secret/key/0123456789abcdefgh}
RGW_BUCKET=${RGW_BUCKET:-topcow-test}
RGW_TIMEOUT=${RGW_TIMEOUT:-90}   # seconds for the whole start
RGW_MEMSTORE_BYTES=${RGW_MEMSTORE_BYTES:-2147483648}   # the OSD's capacity (in RAM)
PY=/usr/bin/python3

# Fail; a half-started cluster is stopped first.
die() {
    echo "rgw.sh: $*" >&2
    [ -n "${DIR:-}" ] && [ -f "$DIR/pids" ] && cmd_stop "$DIR"
    exit 1
}

need() {
    local p
    for p in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool curl; do
        command -v "$p" >/dev/null 2>&1 || {
            echo "rgw.sh: SKIP: $p not installed (scripts/setup.sh installs Ceph)" >&2
            exit 77
        }
    done
    "$PY" -c 'import botocore' 2>/dev/null || {
        echo "rgw.sh: SKIP: python3-botocore not installed" >&2
        exit 77
    }
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    "$PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s until it succeeds, for
# at most SECONDS of wall-clock time.
wait_for() {
    local limit=$1 what=$2 end=$((SECONDS + $1))
    shift 2
    local why p
    until "$@" >/dev/null 2>&1; do
        why=
        [ $SECONDS -ge $end ] && why="timed out after ${limit}s waiting for $what"
        for p in $(cat "$DIR/pids"); do
            alive "$p" || why="a daemon (pid $p) exited while waiting for $what"
        done
        if [ -n "$why" ]; then
            echo "rgw.sh: $why" >&2
            for f in "$DIR"/log/*.log "$DIR"/log/*.out; do
                [ -s "$f" ] || continue
                echo "--- last lines of $f" >&2
                tail -n 15 "$f" >&2
            done
            return 1
        fi
        sleep 0.2
    done
}

# Whether process $1 runs (an exited daemon may linger as a zombie: its
# parent, `rgw.sh start`, is gone and whoever inherits it reaps it late).
alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Start a daemon in the foreground mode (-f), detached from our stdout so
# that `$(rgw.sh start ...)` returns, and remember its pid.
spawn() {
    local name=$1
    shift
    "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! >>"$DIR/pids"
}

cmd_start() {
    need
    DIR=$1
    local owner=${2:-}
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    mkdir -p "$DIR/log" "$DIR/run" "$DIR/mon" "$DIR/osd"
    : >"$DIR/pids"

    local mon_port rgw_port fsid conf
    mon_port=$(free_port)
    rgw_port=$(free_port)
    [ "$mon_port" != "$rgw_port" ] || rgw_port=$(free_port)
    fsid=$("$PY" -c 'import uuid; print(uuid.uuid4())')
    conf=$DIR/ceph.conf
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = $RGW_MEMSTORE_BYTES
osd class update on start = false
osd crush update on start = false
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$name
osd data = $DIR/osd/\$name
keyring = $DIR/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = localhost
rgw thread pool size = 32
EOF
    export CEPH_CONF=$conf

    # The watchdog first: whatever happens below, the daemons go when the
    # owner does.
    if [ -n "$owner" ]; then
        (
            trap '' INT TERM HUP
            while kill -0 "$owner" 2>/dev/null && [ -f "$DIR/pids" ]; do sleep 1; done
            [ -f "$DIR/pids" ] && "$0" stop "$DIR"
        ) </dev/null >/dev/null 2>&1 &
        echo $! >"$DIR/watchdog.pid"
    fi

    monmaptool --create --addv a "[v1:127.0.0.1:$mon_port]" --fsid "$fsid" "$DIR/monmap" \
        >"$DIR/log/monmaptool.out" 2>&1 || die "monmaptool failed: $(cat "$DIR/log/monmaptool.out")"
    ceph-mon -c "$conf" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mon-mkfs.out" 2>&1 ||
        die "ceph-mon --mkfs failed: $(tail -n 5 "$DIR/log/mon-mkfs.out")"
    spawn mon.a ceph-mon -c "$conf" -i a -f

    local deadline=$((SECONDS + RGW_TIMEOUT))
    left() { echo $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)); }
    wait_for "$(left)" "the monitor" timeout 5 ceph -c "$conf" --connect-timeout 3 mon stat ||
        die "ceph-mon did not come up"

    local osd_uuid id
    osd_uuid=$("$PY" -c 'import uuid; print(uuid.uuid4())')
    id=$(timeout 20 ceph -c "$conf" osd new "$osd_uuid") || die "ceph osd new failed"
    mkdir -p "$DIR/osd/osd.$id"
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/osd-mkfs.out" 2>&1 ||
        die "ceph-osd --mkfs failed: $(tail -n 5 "$DIR/log/osd-mkfs.out")"
    timeout 20 ceph -c "$conf" osd crush add "osd.$id" 1.0 root=default \
        >"$DIR/log/crush.out" 2>&1 || die "ceph osd crush add failed: $(cat "$DIR/log/crush.out")"
    spawn "osd.$id" ceph-osd -c "$conf" -i "$id" -f
    osd_up() { ceph -c "$conf" --connect-timeout 3 osd dump 2>/dev/null | grep -q "^osd.$id up"; }
    wait_for "$(left)" "osd.$id to be up" osd_up || die "ceph-osd did not come up"

    timeout 30 radosgw-admin -c "$conf" user create --uid=topcow --display-name=topcow \
        --access-key="$RGW_ACCESS_KEY" --secret-key="$RGW_SECRET_KEY" \
        >"$DIR/log/user.out" 2>&1 || die "radosgw-admin user create failed: $(tail -n 5 "$DIR/log/user.out")"
    spawn rgw radosgw -c "$conf" -n client.rgw -f
    local pid_rgw
    pid_rgw=$(tail -n 1 "$DIR/pids")
    rgw_up() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$rgw_port/"; }
    wait_for "$(left)" "radosgw on port $rgw_port" rgw_up || die "radosgw did not come up"

    # The bucket, made with botocore so that the fixture does not depend on
    # the code under test.
    AWS_ENDPOINT_URL=http://127.0.0.1:$rgw_port "$PY" - "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" \
        "$RGW_BUCKET" >"$DIR/log/bucket.out" 2>&1 <<'EOF' || die "create bucket failed: $(tail -n 5 "$DIR/log/bucket.out")"
import os, sys
import botocore.session, botocore.config
s3 = botocore.session.get_session().create_client(
    's3', region_name='us-east-1', endpoint_url=os.environ['AWS_ENDPOINT_URL'],
    aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2],
    config=botocore.config.Config(s3={'addressing_style': 'path'}))
s3.create_bucket(Bucket=sys.argv[3])
EOF

    # Settings that would override these (a developer's own AWS setup) go.
    cat >"$DIR/env" <<EOF
unset AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_REGION AWS_MAX_ATTEMPTS
export AWS_ENDPOINT_URL=http://127.0.0.1:$rgw_port
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY='$RGW_SECRET_KEY'
export AWS_REGION=us-east-1
export RGW_BUCKET=$RGW_BUCKET
export RGW_PID=$pid_rgw
export RGW_S3CFG=$DIR/s3cfg
EOF
    # For s3cmd, the independent client that tests read the server with:
    # s3cmd -c "$RGW_S3CFG".
    cat >"$DIR/s3cfg" <<EOF
[default]
access_key = $RGW_ACCESS_KEY
secret_key = $RGW_SECRET_KEY
host_base = 127.0.0.1:$rgw_port
host_bucket = 127.0.0.1:$rgw_port
use_https = False
signature_v2 = False
bucket_location = us-east-1
EOF
    cat "$DIR/env"
}

cmd_stop() {
    DIR=$1
    [ -f "$DIR/pids" ] || return 0
    local pids p i running
    pids=$(cat "$DIR/pids")
    rm -f "$DIR/pids"
    # Memstore keeps nothing worth a clean shutdown: SIGKILL, and wait until
    # the processes are gone so the caller can remove DIR.
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    for i in $(seq 100); do
        running=0
        for p in $pids; do alive "$p" && running=1; done
        [ $running = 0 ] && break
        sleep 0.05
    done
    # The watchdog sees DIR/pids gone and ends by itself within a second.
    rm -f "$DIR/watchdog.pid"
    return 0
}

cmd_run() {
    need
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/topcow-rgw.XXXXXX")
    SLEEP_PID=
    trap '[ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null; cmd_stop "$RUN_DIR"; rm -rf "$RUN_DIR"' EXIT
    trap 'exit 130' INT TERM
    (cmd_start "$RUN_DIR" $$ >/dev/null) || exit $?
    # shellcheck disable=SC1091
    . "$RUN_DIR/env"
    if [ $# -gt 0 ]; then
        "$@"
    else
        cat "$RUN_DIR/env"
        echo "# RGW running; Ctrl-C stops it" >&2
        # `wait`, unlike a foreground sleep, lets the INT/TERM trap run at once.
        while :; do
            sleep 3600 &
            SLEEP_PID=$!
            wait "$SLEEP_PID" || true
        done
    fi
}

case ${1:-} in
start) [ $# -ge 2 ] || die "usage: rgw.sh start DIR [OWNER_PID]"; cmd_start "$2" "${3:-}" ;;
stop) [ $# -eq 2 ] || die "usage: rgw.sh stop DIR"; cmd_stop "$2" ;;
run) shift; cmd_run "$@" ;;
*) die "usage: rgw.sh start DIR [OWNER_PID] | stop DIR | run [CMD ARGS...]" ;;
esac
