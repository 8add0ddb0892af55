"""Schemathesis hooks for run.sh: authenticate every request as the run's
admin, and heal a lock-out.

Schemathesis reuses ids it sees in answers (`GET /api/tokens` lists the
run's own token), so a generated `DELETE /api/tokens/{id}` or
`POST /api/tokens/{id}/rotate {"grace":0}` may revoke the very token the
run uses. That is the API working as documented, not a failure; then the
next `401` makes this provider check the token and, when it is refused,
issue a new one with the CLI (over the running server's admin socket). The
admin user itself cannot be locked or removed through the API (409), which
run.sh checks at the end."""

import os
import subprocess
import urllib.error
import urllib.request

import schemathesis

BIN = os.environ["GATEHOUSE_BIN"]
HOME = os.environ["GATEHOUSE_HOME"]
BASE = os.environ["ST_BASE"]


def works(token: str) -> bool:
    req = urllib.request.Request(f"{BASE}/v1/models", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status == 200
    except urllib.error.HTTPError:
        return False


def issue() -> str:
    out = subprocess.run(
        [BIN, "--home", HOME, "tokens", "issue", "--user", "admin", "--name", "schemathesis",
         "--scope", "read,write,admin"],
        check=True, capture_output=True, text=True, timeout=60,
    )
    token = out.stdout.strip()
    assert token.startswith("gh_"), "tokens issue printed no token"
    return token


# The token every generated request carries (replaced when refused).
STATE = {"token": os.environ["ST_TOKEN"], "reissued": 0}


@schemathesis.auth(refresh_interval=None, retry_on=[])
class AdminToken:
    def get(self, case, ctx):
        return STATE["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def after_call(ctx, case, response):
    # A 401 may be the run's token revoked by a generated request: check it
    # and replace it when it is refused (the next cases use the new one).
    if response.status_code == 401 and not works(STATE["token"]):
        STATE["token"] = issue()
        STATE["reissued"] += 1
        print(f"[hooks] a generated request revoked the run's token; issued a new one ({STATE['reissued']})",
              flush=True)
