#!/bin/bash
# A short end-to-end tour of topcow: thin provisioning, a linked clone,
# inspection, a consistency check, conversion (to VDI and VHDX too),
# serving over NBD, watching it live with topcow top - with QEMU's own tools confirming every result.  Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
BUILD=${1:-build}
TOPCOW=$(cd "$BUILD" && pwd)/tools/topcow
DIR=$(mktemp -d "${TMPDIR:-/tmp}/topcow-demo.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cd "$DIR"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A 100 GiB thin-provisioned disk costs almost nothing"
run "$TOPCOW" create -f qcow2 base.qcow2 100G
run du -h --apparent-size base.qcow2

step "Install a 'guest': write data into the base image (qemu-io syntax)"
run "$TOPCOW" io -c "write -P 0x42 0 64M" -c "write -P 0x17 1G 4M" -c "write -z 2G 1G" base.qcow2

step "A linked clone: an overlay that stores only what changes"
run "$TOPCOW" create -f qcow2 -b base.qcow2 -F qcow2 clone.qcow2
run "$TOPCOW" io -c "write -P 0x99 32M 1M" -c "read -P 0x42 0 1M" -c "read -P 0x99 32M 1M" clone.qcow2
run "$TOPCOW" info --backing-chain clone.qcow2

step "Where the data lives (layer 0 = clone, 1 = base)"
run "$TOPCOW" map --max-length=2G clone.qcow2

step "Consistency: topcow check, then QEMU's own verdict"
run "$TOPCOW" check clone.qcow2
run qemu-img check clone.qcow2

step "Roll back a bad update with an internal snapshot"
run "$TOPCOW" snapshot -c before-update clone.qcow2
run "$TOPCOW" io -c "write -P 0xbd 32M 1M" clone.qcow2
run "$TOPCOW" snapshot -l clone.qcow2
run "$TOPCOW" snapshot -a before-update clone.qcow2
run "$TOPCOW" io -c "read -P 0x99 32M 1M" clone.qcow2
run "$TOPCOW" snapshot -d before-update clone.qcow2
run qemu-img check clone.qcow2

step "Flatten the chain to a standalone image, then back to raw"
run "$TOPCOW" convert -O qcow2 clone.qcow2 flat.qcow2
run "$TOPCOW" convert -O raw flat.qcow2 flat.raw
run du -h flat.qcow2 flat.raw

step "QEMU agrees on the content"
run qemu-img compare clone.qcow2 flat.qcow2
run qemu-img compare flat.qcow2 flat.raw
run "$TOPCOW" compare clone.qcow2 flat.raw

step "Disks from other hypervisors: VirtualBox VDI and Hyper-V VHDX, both ways"
run "$TOPCOW" convert -O vdi flat.qcow2 disk.vdi
run "$TOPCOW" convert -O vhdx disk.vdi disk.vhdx
run qemu-img compare flat.qcow2 disk.vhdx
run qemu-img check disk.vhdx

step "Serve the clone over NBD, as QEMU boots guests from it"
# The demo's own statistics directory, so that `topcow top` shows only it.
export TOPCOW_STATS_DIR="$DIR/stats"
printf '$ %s\n' "$TOPCOW serve -r -t -k $DIR/nbd.sock clone.qcow2 &"
"$TOPCOW" serve -r -t -k "$DIR/nbd.sock" clone.qcow2 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do [ -S "$DIR/nbd.sock" ] && break; sleep 0.05; done
run qemu-img compare -f qcow2 -F raw clone.qcow2 "nbd+unix:///?socket=$DIR/nbd.sock"

step "Watch it live: topcow top (two samples a second apart while QEMU reads it)"
( for _ in $(seq 30); do
      qemu-io -f raw -r -c "read 0 64M" "nbd+unix:///?socket=$DIR/nbd.sock" >/dev/null 2>&1 || break
  done ) &
reader=$!
run "$TOPCOW" top -b -n 2 -d 1
kill "$reader" 2>/dev/null || true
kill "$server"
wait 2>/dev/null || true

step "Keep it in a remote (a folder here; s3://bucket/prefix/NAME works the same)"
mkdir "$DIR/remote" "$DIR/laptop"
run "$TOPCOW" push flat.qcow2 "file://$DIR/remote/office-pc"
run "$TOPCOW" pull "file://$DIR/remote/office-pc" laptop/office-pc.qcow2
run "$TOPCOW" io -c "write -P 0x99 1M 4M" laptop/office-pc.qcow2
run "$TOPCOW" push laptop/office-pc.qcow2 "file://$DIR/remote/office-pc"
run "$TOPCOW" pull "file://$DIR/remote/office-pc" flat.qcow2
run qemu-img compare laptop/office-pc.qcow2 flat.qcow2
run "$TOPCOW" remote log "file://$DIR/remote/office-pc"

printf '\nDone: every image above passes qemu-img check and reads the same in QEMU.\n'
