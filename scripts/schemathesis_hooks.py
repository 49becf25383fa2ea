"""Schemathesis hooks for scripts/schemathesis.sh.

A schema-valid ``Idempotency-Key`` is replaced by a fresh UUID on every call. Schemathesis draws
header values from a small space, so it sends one key with many different bodies; the server
then answers 422 ``idempotency-key-reused``, as the IETF draft requires, which schemathesis
would count as a valid request rejected. Invalid keys are left alone so that their rejection is
still checked, and so are negative cases: schemathesis revalidates a case a hook touched,
which would turn, say, a request without its Authorization header into a "positive" one.
Key reuse itself is covered by tests/nothing_lost.rs.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[ -~]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_KEY.match(value):
            headers[name] = str(uuid.uuid4())
