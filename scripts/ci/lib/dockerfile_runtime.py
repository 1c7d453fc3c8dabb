#!/usr/bin/env python3
"""The Dockerfile's runtime stage carries what `accord run` needs against a production Kafka.

    python3 scripts/ci/lib/dockerfile_runtime.py [Dockerfile]

The runtime stage (the last FROM) must install ca-certificates (librdkafka
verifies broker certificates against the system store when no
ssl.ca.location is given) and the OpenSSL runtime (libssl3: librdkafka is
linked against the system OpenSSL for TLS, SASL/SCRAM and OIDC token
requests), and end as a non-root user (USER other than root/0). Prints one
line per problem; exits 1 if there is any.
"""
import re
import sys


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "Dockerfile"
    with open(path) as fh:
        text = fh.read()
    # Continuation lines joined, comments dropped: one instruction per line.
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    starts = [i for i, ln in enumerate(lines) if re.match(r"(?i)^\s*FROM\s", ln)]
    if not starts:
        sys.exit("%s: no FROM" % path)
    runtime = lines[starts[-1]:]
    installs = " ".join(ln for ln in runtime if re.match(r"(?i)^\s*RUN\s", ln) and "install" in ln)
    problems = []
    for pkg, why in (("ca-certificates", "CA certificates for TLS to brokers"),
                     ("libssl3", "the OpenSSL runtime librdkafka links against")):
        if not re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(pkg), installs):
            problems.append("%s: the runtime stage does not install %s (%s)" % (path, pkg, why))
    users = [ln.split(None, 1)[1].strip() for ln in runtime if re.match(r"(?i)^\s*USER\s", ln)]
    if not users:
        problems.append("%s: the runtime stage has no USER (it would run as root)" % path)
    elif re.match(r"^(root|0)(:|$)", users[-1]):
        problems.append("%s: the runtime stage runs as %s" % (path, users[-1]))
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print("%s: runtime stage installs ca-certificates and libssl3, runs as USER %s" % (path, users[-1]))


if __name__ == "__main__":
    main()
