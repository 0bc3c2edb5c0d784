#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Our SigV4 signer against botocore's, the independent oracle.
#
#   sigv4-botocore.py SIGV4-VECTORS
#
# SIGV4-VECTORS (tests/cloud/sigv4-vectors.c) signs a set of S3 requests with
# lib/cloud/s3-sigv4.c and prints each request with our Authorization header.
# This script rebuilds every request as botocore would send it (the path
# encoded by botocore's own percent_encode, as its S3 serializer does for
# keys; query parameters raw, for botocore to encode), signs it at the same
# instant with botocore's S3SigV4Auth (SigV4Auth with S3's path rules), and
# fails if any Authorization, X-Amz-Date or X-Amz-Content-SHA256 differs.
# Where the path needs no normalization, botocore's generic SigV4Auth must
# agree too.  Exit 0 pass, 1 fail, 77 botocore not installed.
import datetime
import json
import subprocess
import sys
import types

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.utils import normalize_url_path, percent_encode
except ImportError:
    print("SKIP: python3-botocore not installed", file=sys.stderr)
    sys.exit(77)
from urllib.parse import quote


def frozen_clock(when):
    """Make botocore read @when as the current UTC time, whichever clock
    function this botocore version calls."""
    fixed = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).replace(tzinfo=None)

    class Frozen(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

        @classmethod
        def now(cls, tz=None):
            return fixed if tz is None else fixed.replace(tzinfo=tz)

    botocore.auth.datetime = types.SimpleNamespace(datetime=Frozen, timezone=datetime.timezone)
    if hasattr(botocore.auth, "get_current_datetime"):
        botocore.auth.get_current_datetime = lambda *a, **k: fixed


def unhex(s):
    return bytes.fromhex(s).decode("utf-8")


def botocore_sign(vec, signer_class, with_content_sha_header=False):
    path = unhex(vec["path"])
    url = vec["endpoint"] + percent_encode(path, safe="/~")
    params = [(unhex(k), unhex(v)) for k, v in vec["query"]]
    req = AWSRequest(method=vec["method"], url=url, data=bytes.fromhex(vec["body"]),
                     params=params or None)
    for k, v in vec["headers"]:
        req.headers[unhex(k)] = unhex(v)  # appends: a repeated name stays repeated
    if with_content_sha_header:
        req.headers["X-Amz-Content-SHA256"] = vec["payload_hash"]
    token = unhex(vec["token"]) or None
    creds = Credentials(unhex(vec["access_key"]), unhex(vec["secret_key"]), token)
    signer = signer_class(creds, "s3", vec["region"])
    frozen_clock(vec["time"])
    signer.add_auth(req)
    return req, signer


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sigv4-botocore.py SIGV4-VECTORS")
    out = subprocess.run([sys.argv[1]], stdout=subprocess.PIPE, check=False)
    if out.returncode != 0:
        print(f"FAIL: {sys.argv[1]} exited {out.returncode}", file=sys.stderr)
        return 1
    vecs = [json.loads(line) for line in out.stdout.decode().splitlines()]
    if len(vecs) < 20:
        print(f"FAIL: only {len(vecs)} requests signed", file=sys.stderr)
        return 1
    failed = generic = 0
    for vec in vecs:
        req, signer = botocore_sign(vec, botocore.auth.S3SigV4Auth)
        want = {
            "Authorization": req.headers["Authorization"],
            "X-Amz-Date": req.headers["X-Amz-Date"],
            "X-Amz-Content-SHA256": req.headers["X-Amz-Content-SHA256"],
        }
        got = {
            "Authorization": vec["authorization"],
            "X-Amz-Date": vec["amz_date"],
            "X-Amz-Content-SHA256": vec["payload_hash"],
        }
        if want != got:
            failed += 1
            print(f"FAIL {vec['name']}:", file=sys.stderr)
            for k in want:
                if want[k] != got[k]:
                    print(f"  {k}\n    botocore: {want[k]}\n    ours:     {got[k]}",
                          file=sys.stderr)
            print("  botocore canonical request:\n" + signer.canonical_request(req),
                  file=sys.stderr)
            print("  our canonical request:\n" + unhex(vec["canonical_request"]),
                  file=sys.stderr)
            continue
        # The generic signer normalizes and re-quotes paths; where that
        # changes nothing it must produce the same signature.
        encoded = percent_encode(unhex(vec["path"]), safe="/~")
        if quote(normalize_url_path(encoded), safe="/~") == encoded:
            req2, _ = botocore_sign(vec, botocore.auth.SigV4Auth, with_content_sha_header=True)
            generic += 1
            if req2.headers["Authorization"] != vec["authorization"]:
                failed += 1
                print(f"FAIL {vec['name']} (generic SigV4Auth):\n"
                      f"    botocore: {req2.headers['Authorization']}\n"
                      f"    ours:     {vec['authorization']}", file=sys.stderr)
                continue
        print(f"ok {vec['name']}")
    print(f"{len(vecs) - failed}/{len(vecs)} requests signed as botocore signs them "
          f"({generic} also checked with the generic SigV4Auth)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
