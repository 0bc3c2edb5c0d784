# SPDX-License-Identifier: MIT
# Shared helpers for the luks-* interop tests: lib/crypto (through
# tests/tools/luks-tool) against qemu-img and qemu-io on standalone LUKS
# files, QEMU's "luks" format.  Source after tests/lib.sh.

LUKS_TOOL="$TOPCOW_BUILDDIR/tests/tools/luks-tool"
[ -x "$LUKS_TOOL" ] || fail "luks-tool not built ($LUKS_TOOL)"
PW="topcow-luks-passphrase"  # no spaces or commas: it goes into --object data=
export LUKS_PASS="$PW"

# Every cipher combination qemu-img 7.2 (nettle backend) accepts for
# `create -f luks`, as "alg mode ivgen[:ivhash]".  192-bit keys work only in
# xts (elsewhere qemu-img asserts: 24 * 4000 bytes of key material is not a
# whole number of sectors); essiv needs a hash as long as a key of the
# cipher family (md5 or sha256; md5 only for cast5); cast5 has no xts.
luks_combos() {
    local a m iv
    for a in aes-128 aes-256 serpent-128 serpent-256 twofish-128 twofish-256; do
        for m in ecb cbc xts ctr; do
            for iv in plain plain64 essiv:md5 essiv:sha256; do echo "$a $m $iv"; done
        done
    done
    for a in aes-192 serpent-192 twofish-192; do
        for iv in plain plain64 essiv:md5 essiv:sha256; do echo "$a xts $iv"; done
    done
    for m in ecb cbc ctr; do
        for iv in plain plain64 essiv:md5; do echo "cast5-128 $m $iv"; done
    done
}
LUKS_HASHES=(md5 sha1 sha224 sha256 sha384 sha512 ripemd160)

# qemu-img's -o for "alg mode ivgen[:ivhash]" plus a hash.
qemu_opts() { # ALG MODE IVGEN[:HASH] HASH
    local o="cipher-alg=$1,cipher-mode=$2,ivgen-alg=${3%%:*},hash-alg=$4"
    case $3 in *:*) o="$o,ivgen-hash-alg=${3#*:}" ;; esac
    echo "$o"
}
tool_opts() { # the same for luks-tool create
    local o="--cipher-alg $1 --cipher-mode $2 --ivgen-alg ${3%%:*} --hash-alg $4"
    case $3 in *:*) o="$o --ivgen-hash-alg ${3#*:}" ;; esac
    echo "$o"
}

# QEMU's --image-opts for FILE with passphrase PASS (default $PW).
qobj() { echo "--object secret,id=s,data=${1:-$PW}"; }
qimg() { echo "driver=luks,key-secret=s,file.filename=$1"; }

# qemu-img create -f luks, retried: with a fast PBKDF2 qemu-img 7.2 often
# fails its iteration measurement ("Unable to get accurate CPU usage").
qemu_create() { # FILE SIZE OPTS
    local i out
    for i in 1 2 3 4 5 6 7 8 9 10; do
        rm -f "$1"
        if out=$(qemu-img create -q -f luks $(qobj) -o "key-secret=s,iter-time=10${3:+,$3}" "$1" "$2" 2>&1); then
            return 0
        fi
        case $out in *"accurate CPU usage"*) continue ;; esac
        fail "qemu-img create $3: $out"
    done
    fail "qemu-img create $3: $out"
}

# qemu-img info's view of LUKS headers, in luks-tool dump's format: each
# JSON file F (qemu-img info --output=json) becomes F.txt.  One python run
# for many files, as its start-up costs more than the rest of a check.
qemu_dump_files() { # JSON...
    python3 - "$@" <<'PY'
import json, sys
for f in sys.argv[1:]:
    d = json.load(open(f))["format-specific"]["data"]
    out = ["cipher-alg: %s" % d["cipher-alg"], "cipher-mode: %s" % d["cipher-mode"],
           "ivgen-alg: %s" % d["ivgen-alg"]]
    if "ivgen-hash-alg" in d:
        out.append("ivgen-hash-alg: %s" % d["ivgen-hash-alg"])
    out += ["hash-alg: %s" % d["hash-alg"], "payload-offset: %d" % d["payload-offset"],
            "master-key-iters: %d" % d["master-key-iters"], "uuid: %s" % d["uuid"]]
    for i, s in enumerate(d["slots"]):
        if s["active"]:
            out.append("slot %d: active iters=%d stripes=%d key-offset=%d"
                       % (i, s["iters"], s["stripes"], s["key-offset"]))
        else:
            out.append("slot %d: inactive key-offset=%d" % (i, s["key-offset"]))
    open(f + ".txt", "w").write("\n".join(out) + "\n")
PY
}
tool_dump() { "$LUKS_TOOL" dump "$1" | grep -v '^luks-cipher:'; }

# Record FILE's header as luks-tool and qemu-img info see it, under NAME;
# check_dumps compares every recorded pair.
record_dump() { # FILE NAME
    tool_dump "$1" > "$2.tool.txt" || fail "$2: luks-tool dump failed"
    qemu-img info --output=json "$1" > "$2.json" || fail "$2: qemu-img info failed"
}
check_dumps() { # NAME...
    local n files=()
    for n in "$@"; do files+=("$n.json"); done
    qemu_dump_files "${files[@]}"
    for n in "$@"; do
        cmp -s "$n.tool.txt" "$n.json.txt" ||
            { diff "$n.tool.txt" "$n.json.txt" >&2; fail "$n: luks-tool dump and qemu-img info differ"; }
    done
}

# The payload patterns every test writes, and the raw image they make.
#   QEMU:      zeros over the whole MiB (a never-written sector of a LUKS
#              payload decrypts to noise), then 0x5a over [0, 64k), 0xa5 over
#              [1536, 4608), 0x3c over [70001, 75001)
#   luks-tool: rnd (40000 random bytes) at 133633
make_patterns() {
    head -c 40000 /dev/urandom > rnd
    rm -f ref.raw
    truncate -s 1M ref.raw
    head -c 65536 /dev/zero | tr '\0' '\132' | dd of=ref.raw conv=notrunc status=none
    head -c 3072 /dev/zero | tr '\0' '\245' |
        dd of=ref.raw bs=3072 seek=1536 oflag=seek_bytes conv=notrunc status=none
    head -c 5000 /dev/zero | tr '\0' '\074' |
        dd of=ref.raw bs=5000 seek=70001 oflag=seek_bytes conv=notrunc status=none
    dd if=rnd of=ref.raw bs=40000 seek=133633 oflag=seek_bytes conv=notrunc status=none
}
QEMU_WRITES=(-c 'write -P 0 0 1M' -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 1536 3k' -c 'write -P 0x3c 70001 5000')

# Fill FILE (1 MiB payload) with the patterns: QEMU writes its part, then
# luks-tool writes its part; both must then read the whole payload as ref.raw.
exchange() { # FILE WHAT
    local out
    out=$(qemu-io $(qobj) --image-opts "$(qimg "$1")" "${QEMU_WRITES[@]}" 2>&1) ||
        fail "$2: qemu-io write: $out"
    "$LUKS_TOOL" write "$1" 133633 < rnd || fail "$2: luks-tool write"
    "$LUKS_TOOL" read "$1" 0 1M > got.raw || fail "$2: luks-tool read"
    cmp -s got.raw ref.raw || fail "$2: luks-tool reads other data than QEMU and luks-tool wrote"
    out=$(qemu-img compare $(qobj) --image-opts "$(qimg "$1")" "driver=raw,file.filename=ref.raw" 2>&1) ||
        fail "$2: qemu-img compare: $out"
}

# A wrong passphrase is refused by both, each with its own clear message.
wrong_pass() { # FILE WHAT
    local out
    if out=$(LUKS_PASS="not the passphrase" "$LUKS_TOOL" read "$1" 0 512 2>&1 >/dev/null); then
        fail "$2: luks-tool accepted a wrong passphrase"
    fi
    case $out in *"invalid passphrase"*) ;; *) fail "$2: luks-tool said: $out" ;; esac
    case $out in *"not the passphrase"*) fail "$2: the message quotes the passphrase" ;; esac
    if out=$(qemu-io $(qobj wrong) --image-opts "$(qimg "$1")" -c 'read 0 512' 2>&1); then
        fail "$2: qemu-io accepted a wrong passphrase"
    fi
    case $out in *"Invalid password"*) ;; *) fail "$2: qemu-io said: $out" ;; esac
}
