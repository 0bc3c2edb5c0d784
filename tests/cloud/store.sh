#!/bin/bash
# The object-store interface (lib/cloud/store.c) behaves the same on every
# backend: this one script runs against a file:// directory (test
# store-file) and against s3:// on a real Ceph RGW (from s3-rgw.sh, which
# has one running).
#
#   store.sh STORE_TOOL file         a fresh directory in the scratch space
#   store.sh STORE_TOOL s3://B/P     an existing bucket; P must hold no keys
#
# Checks: round trip and ETags (the content's MD5 on both), create-once
# (-EEXIST, object untouched), compare-and-swap (-ESTALE on a stale or
# missing ETag), ranges, delete, listing in S3's byte order, the keys both
# refuse, and under concurrency: parallel compare-and-swap increments lose
# no update, and of parallel create-once writers exactly one wins.
. "$TOPCOW_SRCDIR/tests/lib.sh"

T=${1:?usage: store.sh STORE_TOOL file|URL}
URL=${2:?usage: store.sh STORE_TOOL file|URL}
if [ "$URL" = file ]; then
    mkdir "$SCRATCH/store"
    URL=file://$SCRATCH/store
fi
echo "store $URL"
st() { "$T" "$URL" "$@"; }
md5() { md5sum <"$1" | cut -d' ' -f1; }

# st_fails ERRNO_NAME TEXT ARGS...: store-tool ARGS must fail so.
st_fails() {
    local name=$1 text=$2
    shift 2
    must_fail st "$@"
    case $ERR in
    *"store-tool: $name: "*"$text"*) ;;
    *) fail "store-tool $*: expected $name and '$text', got: $ERR" ;;
    esac
}

echo "-- round trip, ETags"
head -c 300000 /dev/urandom >"$SCRATCH/obj"
echo first >"$SCRATCH/first"
echo second >"$SCRATCH/second"
e=$(st put-once img/obj "$SCRATCH/obj")
[ "$e" = "$(md5 "$SCRATCH/obj")" ] || fail "put-once ETag $e is not the MD5"
st get img/obj "$SCRATCH/obj.back"
cmp -s "$SCRATCH/obj" "$SCRATCH/obj.back" || fail "get returned other bytes"
[ "$(st head img/obj)" = "300000 $e" ] || fail "head: $(st head img/obj)"
[ "$(st get-info img/obj)" = "300000 $e" ] || fail "get's info: $(st get-info img/obj)"
: >"$SCRATCH/empty"
st put-once img/empty "$SCRATCH/empty" >/dev/null
[ "$(st head img/empty)" = "0 d41d8cd98f00b204e9800998ecf8427e" ] || fail "empty object"
st put-once "uni/été/日本 x" "$SCRATCH/first" >/dev/null
[ "$(st get "uni/été/日本 x" -)" = first ] || fail "a UTF-8 key with a space"

echo "-- ranges"
for r in "0 1 1" "1000 5000 5000" "299990 100 10" "300000 10 0" "900000 10 0"; do
    set -- $r
    got=$(st get-range img/obj "$1" "$2" "$SCRATCH/range")
    [ "$got" = "$3" ] || fail "range $1+$2: $got bytes, expected $3"
    cmp -s <(tail -c +$(($1 + 1)) "$SCRATCH/obj" | head -c "$3") "$SCRATCH/range" ||
        fail "range $1+$2: wrong bytes"
done

echo "-- create once"
st put-once gen/m1 "$SCRATCH/first" >/dev/null
st_fails EEXIST "gen/m1" put-once gen/m1 "$SCRATCH/second"
[ "$(st get gen/m1 -)" = first ] || fail "create-once replaced an object"

echo "-- compare and swap"
e1=$(st put-once gen/HEAD "$SCRATCH/first")
e2=$(st put-cas gen/HEAD "$SCRATCH/second" "$e1") || fail "CAS with the current ETag"
[ "$e2" = "$(md5 "$SCRATCH/second")" ] || fail "CAS ETag $e2 is not the MD5"
[ "$(st get gen/HEAD -)" = second ] || fail "CAS did not write"
st_fails ESTALE "gen/HEAD" put-cas gen/HEAD "$SCRATCH/first" "$e1"
[ "$(st get gen/HEAD -)" = second ] || fail "a stale CAS wrote"
st_fails ESTALE "gen/none" put-cas gen/none "$SCRATCH/first" "$e1"
st_fails ENOENT "gen/none" head gen/none

echo "-- delete"
st delete gen/m1
st_fails ENOENT "gen/m1" get gen/m1 -
st_fails ENOENT "gen/m1" head gen/m1
st delete gen/m1 || fail "deleting a missing key"
st put-once gen/m1 "$SCRATCH/second" >/dev/null || fail "create-once after delete"
st delete "uni/été/日本 x"
st put-once uni "$SCRATCH/first" >/dev/null || fail "a deleted key's 'directory' is free again"

echo "-- listing"
for k in a/b/c a/b-c a/bc a/b/d/e a/b a0; do
    st put-once "$k" "$SCRATCH/first" >/dev/null 2>&1 || true
done
# "a/b" beside "a/b/c" is fine on S3; a file store cannot hold both, so the
# listing below is taken from what actually exists.
want="a/b-c 6
a/b/c 6
a/b/d/e 6
a/bc 6"
got=$(st list a/b | grep -v '^a/b 6$')
[ "$got" = "$want" ] || fail "list a/b (byte order: '-' < '/' < 'c'):
$got"
[ "$(st list a/b/)" = "a/b/c 6
a/b/d/e 6" ] || fail "list a/b/: $(st list a/b/)"
[ -z "$(st list nothing/)" ] || fail "an empty listing"
st list "" | cut -d' ' -f1 >"$SCRATCH/all"
LC_ALL=C sort -c "$SCRATCH/all" || fail "the full listing is not in byte order"
for k in img/obj img/empty gen/HEAD gen/m1 uni a/b/c a0; do
    grep -qx "$k" "$SCRATCH/all" || fail "list '' misses $k: $(cat "$SCRATCH/all")"
done
[ "$(grep -c . "$SCRATCH/all")" -le 12 ] || fail "list '' shows keys this script did not make"

echo "-- keys both stores refuse"
for k in ../x a//b /abs a/./b a/../b a/ .topcow-tmp/lock "$(printf 'a\tb')"; do
    st_fails EINVAL "store: key" head "$k"
done

echo "-- 4 writers x 15 compare-and-swap increments"
echo 0 >"$SCRATCH/zero"
st put-once count "$SCRATCH/zero" >/dev/null
pids=
for i in 1 2 3 4; do
    st incr count 15 >"$SCRATCH/incr.$i" 2>&1 &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "an incrementer failed: $(cat "$SCRATCH"/incr.*)"; done
[ "$(st get count - | cut -d' ' -f1)" = 60 ] || fail "lost updates: the counter is $(st get count -), not 60"
echo "   counter 60; $(cat "$SCRATCH"/incr.* | awk '{n += $2} END {print n}') conflicts retried"

echo "-- 6 create-once writers of one key"
pids=
for i in 1 2 3 4 5 6; do
    echo "writer $i" >"$SCRATCH/w.$i"
    st put-once race "$SCRATCH/w.$i" >"$SCRATCH/race.$i" 2>&1 &
    pids="$pids $!"
done
won=0
i=0
for p in $pids; do
    i=$((i + 1))
    if wait "$p"; then
        won=$((won + 1))
        winner=$i
    else
        grep -q "store-tool: EEXIST: " "$SCRATCH/race.$i" || fail "writer $i: $(cat "$SCRATCH/race.$i")"
    fi
done
[ $won = 1 ] || fail "$won create-once writers won"
[ "$(st get race -)" = "writer $winner" ] || fail "the object is not the winner's"

echo "store $URL: ok"
