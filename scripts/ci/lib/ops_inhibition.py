#!/usr/bin/env python3
"""The shipped Alertmanager inhibit rules, on a real Alertmanager.

    python3 scripts/ci/lib/ops_inhibition.py

Starts Alertmanager (Debian's prometheus-alertmanager, or `alertmanager`
on PATH) with deploy/alertmanager.yml on 127.0.0.1 and a free port, posts
alerts to its API and checks which are inhibited: the fast burn-rate page
inhibits the per-pair, parity-drift and slow burn-rate alerts of the same
feature only; AccordDown inhibits every other accord alert; other teams'
alerts are never inhibited. Each phase waits at most 15 s; Alertmanager is
stopped afterwards (log: target/ops/alertmanager-inhibition.am.log).
Prints one line per problem and "inhibition: ok" or "inhibition: N
problem(s)" (exit 1). Run from scripts/ci/ops-static.sh.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from artifacts import OUT, ROOT
from report import done, fail


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    """Real Alertmanager on 127.0.0.1: are the inhibit rules effective?"""
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    binary = "/usr/bin/prometheus-alertmanager"
    if not os.path.exists(binary):
        binary = "alertmanager"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(OUT, "alertmanager-inhibition.am.log"), "w")
        config = os.path.join(ROOT, "deploy", "alertmanager.yml")
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    urllib.request.urlopen(base + "/-/ready", timeout=2)
                    break
                except Exception:
                    if time.time() > deadline or proc.poll() is not None:
                        fail("alertmanager did not become ready within 30s (see alertmanager-inhibition.am.log)")
                        done("inhibition")
                    time.sleep(0.2)

            def post(*alerts):
                body = json.dumps([{"labels": a, "annotations": {}} for a in alerts]).encode()
                req = urllib.request.Request(base + "/api/v2/alerts", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=5)

            def state():
                got = json.load(urllib.request.urlopen(base + "/api/v2/alerts", timeout=5))
                return {(a["labels"]["alertname"], a["labels"].get("feature", "")): bool(a["status"]["inhibitedBy"])
                        for a in got}

            def expect(want, phase):
                deadline = time.time() + 15
                while True:
                    st = state()
                    if all(st.get(k) == v for k, v in want.items()):
                        print(f"{phase}: ok {st}")
                        return
                    if time.time() > deadline:
                        fail(f"{phase}: want inhibited={want}, got {st}")
                        return
                    time.sleep(0.3)

            burn = {"alertname": "AccordExposedAgreementBurnRateFast", "feature": "checkout_v2", "severity": "critical"}
            pair1 = {"alertname": "AccordLayerPairDivergence", "feature": "checkout_v2", "kind": "path_mismatch",
                     "upstream": "api", "downstream": "worker", "severity": "warning"}
            drift1 = {"alertname": "AccordExposureParityDrift", "feature": "checkout_v2", "layer": "api",
                      "upstream": "frontend", "severity": "warning"}
            slow1 = {"alertname": "AccordExposedAgreementBurnRateSlow", "feature": "checkout_v2", "severity": "warning"}
            pair2 = {"alertname": "AccordLayerPairDivergence", "feature": "search.ranking", "kind": "snapshot_skew",
                     "upstream": "api", "downstream": "analytics", "severity": "warning"}
            lag = {"alertname": "AccordConsumerLagHigh", "topic": "decisions", "partition": "0", "severity": "warning"}
            other = {"alertname": "SomeOtherTeamAlert", "severity": "warning"}
            post(burn, pair1, drift1, slow1, pair2, lag, other)
            expect({("AccordExposedAgreementBurnRateFast", "checkout_v2"): False,
                    ("AccordLayerPairDivergence", "checkout_v2"): True,
                    ("AccordExposureParityDrift", "checkout_v2"): True,
                    ("AccordExposedAgreementBurnRateSlow", "checkout_v2"): True,
                    ("AccordLayerPairDivergence", "search.ranking"): False,
                    ("AccordConsumerLagHigh", ""): False,
                    ("SomeOtherTeamAlert", ""): False}, "burn-rate inhibits the same feature only")
            post({"alertname": "AccordDown", "job": "accord", "severity": "critical"})
            expect({("AccordDown", ""): False,
                    ("AccordExposedAgreementBurnRateFast", "checkout_v2"): True,
                    ("AccordLayerPairDivergence", "search.ranking"): True,
                    ("AccordConsumerLagHigh", ""): True,
                    ("SomeOtherTeamAlert", ""): False}, "AccordDown inhibits every other accord alert")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    done("inhibition")


if __name__ == "__main__":
    main()
