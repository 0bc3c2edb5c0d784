#!/bin/bash
# SPDX-License-Identifier: MIT
#
# top-screenshot.sh - render docs/top-screen.txt, the README's picture of
# `topcow top`, from a real run.
#
# Usage: scripts/top-screenshot.sh [BUILD_DIR] [OUTPUT]
#
# Two images are served over NBD with fio driving each: web.qcow2, a linked
# clone of base.qcow2, takes 4k random reads and 64k (cluster) random
# writes, both Zipf-distributed, over twice the base's data (reads answered
# by both layers, some regions hotter than others);
# db.qcow2 takes 1M sequential writes (it grows).
# `topcow top` runs in a 100-column tmux window: the list first, then the
# window is enlarged and the detail view of the busiest image opened.  Both
# captures (plain text) make up OUTPUT.  Needs tmux, fio and qemu-img.
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-docs/top-screen.txt}
TOPCOW=$(cd "$BUILD" && pwd)/tools/topcow
for p in tmux fio qemu-img; do
    command -v "$p" >/dev/null || { echo "top-screenshot: $p is needed" >&2; exit 1; }
done
OUT=$(realpath "$OUT")

DIR=$(mktemp -d "${TMPDIR:-/tmp}/vm-images.XXXXXX")
export TOPCOW_STATS_DIR="$DIR/.stats"
unset TMUX
tm() { tmux -S "$DIR/tmux.sock" -f /dev/null "$@"; }
PIDS=()
cleanup() {
    tm kill-server 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"

# A base with data, a clone over it, and an empty disk.
qemu-img create -q -f qcow2 base.qcow2 4G
"$TOPCOW" io -c "write -P 0x42 0 1G" base.qcow2 >/dev/null
"$TOPCOW" create -q -f qcow2 -b base.qcow2 -F qcow2 web.qcow2
"$TOPCOW" create -q -f qcow2 db.qcow2 2G

serve() {   # NAME FILE: two connections each (web takes two fio jobs)
    "$TOPCOW" serve -t -e 2 -k "$DIR/$1.sock" -f qcow2 "$2" 2>"$DIR/$1.log" &
    PIDS+=($!)
    for _ in $(seq 100); do [ -S "$DIR/$1.sock" ] && return; sleep 0.05; done
    cat "$DIR/$1.log" >&2
    exit 1
}
serve web web.qcow2
serve db db.qcow2

fio --thread --ioengine=nbd --uri="nbd+unix:///?socket=$DIR/web.sock" --iodepth=8 --size=2G \
    --random_distribution=zipf:1.1 --time_based --runtime=60 \
    --name=web-read --rw=randread --bs=4k --rate_iops=1500 \
    --name=web-write --rw=randwrite --bs=64k --rate_iops=150 >web.fio 2>&1 &
PIDS+=($!)
fio --thread --name=db --ioengine=nbd --uri="nbd+unix:///?socket=$DIR/db.sock" --rw=write \
    --offset=1G --bs=1M --iodepth=4 --size=1G --rate=40M --time_based --runtime=60 >db.fio 2>&1 &
PIDS+=($!)
sleep 3

tm new-session -d -x 100 -y 8 "exec $TOPCOW top -d 2"
sleep 5
tm capture-pane -p >list.txt
if ! grep -q "2 images, 2 active" list.txt; then
    cat list.txt >&2
    cat ./*.fio >&2
    echo "top-screenshot: the images are idle (fio output above)" >&2
    exit 1
fi
tm resize-window -x 100 -y 24
tm send-keys j j Enter   # the last row (the selection follows an image): web
sleep 4.5
tm capture-pane -p >detail.txt
tm send-keys q

{ cat list.txt; echo; cat detail.txt; } | sed 's/ *$//' >"$OUT"
echo "top-screenshot: wrote $OUT ($(wc -l <"$OUT") lines)"
