#!/bin/bash
# TLS: with --tls-creds (--tls=require) a client that does not start TLS is
# refused; --tls=on lets both in, --tls=off offers no TLS; nbdinfo,
# nbdcopy and qemu-io get in with the right pre-shared key (tls-creds-psk)
# or certificates (tls-creds-x509, client certificates required by default)
# and read and write the right data; a wrong key or a missing client
# certificate is refused.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require qemu-img qemu-io nbdinfo nbdcopy psktool certtool
cd "$SCRATCH"

qemu-img create -q -f qcow2 img.qcow2 16M
ok qemu-io -f qcow2 -c 'write -P 0x3c 0 2M' img.qcow2
qemu-img convert -O raw img.qcow2 want.raw

# ---- pre-shared keys -----------------------------------------------------------
mkdir psk badpsk
psktool -u alice -p psk/keys.psk >/dev/null 2>&1
psktool -u alice -p badpsk/keys.psk >/dev/null 2>&1
serve_start p -t -e 2 --object "tls-creds-psk,id=tls0,dir=$SCRATCH/psk,endpoint=server" \
    --tls-creds tls0 -f qcow2 img.qcow2
S=$(sock p)
nbdinfo "nbd+unix:///?socket=$S" > plain.txt 2>&1 && fail "a client without TLS got in"
must_fail qemu-io -f raw -c 'read 0 1k' "nbd+unix:///?socket=$S"
grep -q 'TLS negotiation required' <<<"$ERR" || fail "refusal does not ask for TLS: $ERR"
nbdinfo "nbds+unix://alice@/?socket=$S&tls-psk-file=$SCRATCH/badpsk/keys.psk" \
    > bad.txt 2>&1 && fail "a wrong key got in"
grep -q 'gnutls_handshake' bad.txt || fail "wrong key refused for another reason: $(cat bad.txt)"
P="nbds+unix://alice@/?socket=$S&tls-psk-file=$SCRATCH/psk/keys.psk"
nbdinfo "$P" > info.txt 2>&1 || { cat info.txt >&2; fail "nbdinfo with the key"; }
grep -q 'with TLS' info.txt || fail "not TLS: $(cat info.txt)"
nbdcopy "$P" out.raw
cmp want.raw out.raw || fail "nbdcopy over TLS read different data"
ok qemu-io --object "tls-creds-psk,id=c0,endpoint=client,dir=$SCRATCH/psk,username=alice" \
    --image-opts "driver=nbd,path=$S,tls-creds=c0" \
    -c 'write -P 0x4d 1M 300k' -c 'read -P 0x4d 1M 300k' -c 'read -P 0x3c 0 1M'
serve_stop p
qemu_check_clean img.qcow2
ok qemu-io -r -f qcow2 -c 'read -P 0x4d 1M 300k' -c 'read -P 0x3c 1355776 741376' img.qcow2

# ---- --tls=on: TLS offered, clear text allowed; --tls=off: not offered ------------
PSK="tls-creds-psk,id=tls0,dir=$SCRATCH/psk,endpoint=server"
qemu-img convert -O raw img.qcow2 want-now.raw
serve_start on -t -e 2 --object "$PSK" --tls-creds tls0 --tls=on -f qcow2 img.qcow2
S=$(sock on)
nbdinfo "nbd+unix:///?socket=$S" > on-plain.txt 2>&1 ||
    { cat on-plain.txt >&2; fail "--tls=on refused a clear-text client"; }
grep -q 'with TLS' on-plain.txt && fail "clear-text client reported TLS"
nbdinfo "nbds+unix://alice@/?socket=$S&tls-psk-file=$SCRATCH/psk/keys.psk" > on-tls.txt 2>&1 ||
    { cat on-tls.txt >&2; fail "--tls=on refused a TLS client"; }
grep -q 'with TLS' on-tls.txt || fail "--tls=on: not TLS: $(cat on-tls.txt)"
nbdcopy "nbds+unix://alice@/?socket=$S&tls-psk-file=$SCRATCH/psk/keys.psk" on.raw
cmp want-now.raw on.raw || fail "--tls=on: nbdcopy over TLS read different data"
serve_stop on
serve_start off -t --object "$PSK" --tls-creds tls0 --tls=off -f qcow2 img.qcow2
S=$(sock off)
nbdinfo "nbd+unix:///?socket=$S" > off-plain.txt 2>&1 ||
    { cat off-plain.txt >&2; fail "--tls=off refused a clear-text client"; }
nbdinfo "nbds+unix://alice@/?socket=$S&tls-psk-file=$SCRATCH/psk/keys.psk" > off-tls.txt 2>&1 &&
    fail "--tls=off offered TLS"
serve_stop off
must_fail "$TOPCOW" serve -k "$SCRATCH/never.sock" --tls=require img.qcow2
[ "$(echo "$ERR" | wc -l)" = 1 ] && grep -q 'needs --tls-creds' <<<"$ERR" ||
    fail "--tls=require without credentials: $ERR"
must_fail "$TOPCOW" serve -k "$SCRATCH/never.sock" --tls=maybe img.qcow2
grep -q "invalid --tls mode 'maybe'" <<<"$ERR" || fail "--tls=maybe: $ERR"

# ---- x509 ------------------------------------------------------------------------
mkdir -p x509/server x509/client x509/nocert
cat > ca.info <<'T'
cn = topcow test CA
ca
cert_signing_key
expiration_days = 2
T
cat > server.info <<'T'
organization = topcow test
cn = localhost
dns_name = localhost
tls_www_server
encryption_key
signing_key
expiration_days = 2
T
cat > client.info <<'T'
organization = topcow test
cn = client
tls_www_client
encryption_key
signing_key
expiration_days = 2
T
certtool --generate-privkey --outfile ca-key.pem >/dev/null 2>&1
certtool --generate-self-signed --load-privkey ca-key.pem --template ca.info \
    --outfile ca-cert.pem >/dev/null 2>&1
for who in server client; do
    certtool --generate-privkey --outfile "x509/$who/$who-key.pem" >/dev/null 2>&1
    certtool --generate-certificate --load-privkey "x509/$who/$who-key.pem" \
        --load-ca-certificate ca-cert.pem --load-ca-privkey ca-key.pem \
        --template "$who.info" --outfile "x509/$who/$who-cert.pem" >/dev/null 2>&1
    cp ca-cert.pem "x509/$who/"
done
cp ca-cert.pem x509/nocert/
serve_start x -t -e 2 --object "tls-creds-x509,id=tls0,dir=$SCRATCH/x509/server,endpoint=server" \
    --tls-creds tls0 -f qcow2 img.qcow2
S=$(sock x)
X="nbds+unix:///?socket=$S&tls-certificates=$SCRATCH/x509/client"
nbdinfo "$X" > x.txt 2>&1 || { cat x.txt >&2; fail "nbdinfo with a client certificate"; }
grep -q 'with TLS' x.txt || fail "not TLS: $(cat x.txt)"
nbdinfo "nbds+unix:///?socket=$S&tls-certificates=$SCRATCH/x509/nocert" > nocert.txt 2>&1 &&
    fail "a client without a certificate got in"
grep -q 'Certificate is required' "$SCRATCH/x.log" ||
    fail "no certificate refused for another reason: $(cat nocert.txt "$SCRATCH/x.log")"
ok qemu-io --object "tls-creds-x509,id=c0,endpoint=client,dir=$SCRATCH/x509/client" \
    --image-opts "driver=nbd,path=$S,tls-creds=c0,tls-hostname=localhost" \
    -c 'write -P 0x5e 3M 64k' -c 'read -P 0x5e 3M 64k'
serve_stop x
qemu_check_clean img.qcow2
ok qemu-io -r -f qcow2 -c 'read -P 0x5e 3M 64k' img.qcow2

# verify-peer=off: a client without a certificate gets in (the server still
# proves itself with its own).
serve_start xo -t --object \
    "tls-creds-x509,id=tls0,dir=$SCRATCH/x509/server,endpoint=server,verify-peer=off" \
    --tls-creds tls0 -f qcow2 img.qcow2
S=$(sock xo)
nbdinfo "nbds+unix:///?socket=$S&tls-certificates=$SCRATCH/x509/nocert" > xo.txt 2>&1 ||
    { cat xo.txt "$SCRATCH/xo.log" >&2; fail "verify-peer=off refused a client without a certificate"; }
grep -q 'with TLS' xo.txt || fail "verify-peer=off: not TLS: $(cat xo.txt)"
serve_stop xo

# ---- bad configurations -------------------------------------------------------------
must_fail "$TOPCOW" serve -k a.sock --object "tls-creds-psk,id=t,dir=$SCRATCH/nowhere" \
    --tls-creds t img.qcow2
grep -q "keys.psk" <<<"$ERR" || fail "missing keys.psk: $ERR"
must_fail "$TOPCOW" serve -k a.sock --tls-creds t img.qcow2
grep -q "No object with id 't'" <<<"$ERR" || fail "unknown creds: $ERR"
echo "nbd-tls: ok"
