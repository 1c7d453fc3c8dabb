#!/usr/bin/env python3
"""Conventions of the deployment files: docker-compose.yml and Dockerfile.

    python3 scripts/ci/lib/ops_deploy.py compose
    python3 scripts/ci/lib/ops_deploy.py dockerfile

compose: what Debian's docker-compose 1.29 rejects is absent (top-level
name:, healthcheck.start_interval, depends_on.required); every published
port is bound to 127.0.0.1; depends_on waits on health or completion of a
service that has a healthcheck; every long-running service has a
healthcheck; images are pinned; ./ mount sources exist; the Kafka service
is a pinned apache/kafka 4.x single-node KRaft broker; the accord instances'
and simulate commands; deploy/prometheus.yml scrapes every instance; Grafana
provisioning files are apiVersion 1.
dockerfile: a two-stage build (rust:1-bookworm builder, `cargo build
--release --locked`, debian:bookworm-slim runtime), a non-root USER, and
.dockerignore excludes target/.
Prints one line per problem and "<check>: ok" or "<check>: N problem(s)"
(exit 1). Run from scripts/ci/ops-static.sh.
"""
import argparse
import glob
import os
import re

import yaml

from artifacts import ROOT
from report import done, fail


def read(path):
    with open(os.path.join(ROOT, path)) as fh:
        return fh.read()


def cmd_compose():
    c = yaml.safe_load(read("docker-compose.yml"))
    if "name" in c:
        fail("top-level `name:` is rejected by docker-compose 1.29")
    services = c["services"]
    for s, svc in services.items():
        if "start_interval" in svc.get("healthcheck", {}):
            fail(f"{s}: healthcheck.start_interval is rejected by docker-compose 1.29")
    one_shot = {"kafka-init", "simulate"}
    for s, svc in services.items():
        for p in svc.get("ports", []):
            if not str(p).startswith("127.0.0.1:"):
                fail(f"{s}: port {p} is not bound to 127.0.0.1")
        dep = svc.get("depends_on", {})
        if isinstance(dep, list):
            fail(f"{s}: depends_on must use conditions")
        for d, cond in (dep or {}).items():
            if "required" in cond:
                fail(f"{s}: depends_on.{d}.required is rejected by docker-compose 1.29")
            if cond.get("condition") not in ("service_healthy", "service_completed_successfully"):
                fail(f"{s}: depends_on.{d} should wait for service_healthy / completed")
            elif cond["condition"] == "service_healthy" and "healthcheck" not in services[d]:
                fail(f"{s}: waits for {d} to be healthy but {d} has no healthcheck")
        if s not in one_shot and "healthcheck" not in svc:
            fail(f"{s}: no healthcheck")
        img = svc.get("image", "")
        if img and not svc.get("build") and (":" not in img or img.endswith(":latest")):
            fail(f"{s}: image {img!r} is not pinned")
        for v in svc.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("./") and not os.path.exists(os.path.join(ROOT, src)):
                if src == "./accord.toml":
                    print(f"  note: {src} does not exist yet (the catalog, written with the service)")
                else:
                    fail(f"{s}: mount source {src} does not exist")
    k = services["kafka"]
    if not re.fullmatch(r"apache/kafka:4\.\d+\.\d+", k["image"]):
        fail(f"kafka image should be a pinned apache/kafka 4.x tag, got {k['image']}")
    env = {key: str(val) for key, val in k["environment"].items()}
    for key, want in [("KAFKA_PROCESS_ROLES", "broker,controller"),
                      ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
                      ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
                      ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
                      ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")]:
        if env.get(key) != want:
            fail(f"kafka: {key} should be {want}, got {env.get(key)}")
    instances = sorted(s for s in services if re.fullmatch(r"accord-\d+", s))
    if len(instances) < 2:
        fail(f"compose should run several accord instances in one group, got {instances}")
    for inst in instances:
        run = services[inst]["command"]
        for want in (["--config", "/etc/accord/accord.toml"], ["--brokers", "kafka:9092"],
                     ["--topic", "decisions"], ["--listen", "0.0.0.0:9898"], ["--instance-id", inst]):
            if " ".join(want) not in " ".join(run):
                fail(f"{inst}: command lacks {' '.join(want)}")
    if "127.0.0.1:9898:9898" not in services.get("accord", {}).get("ports", []):
        fail("the `accord` address in front of the instances should publish 127.0.0.1:9898")
    sim = " ".join(services["simulate"]["command"])
    if not sim.startswith("simulate") or "--scenario mixed" not in sim:
        fail(f"simulate: unexpected command {sim}")
    prom = yaml.safe_load(read("deploy/prometheus.yml"))
    targets = [t for sc in prom["scrape_configs"] if sc["job_name"] == "accord"
               for st in sc["static_configs"] for t in st["targets"]]
    want = [f"{inst}:9898" for inst in instances]
    if targets != want:
        fail(f"deploy/prometheus.yml: job accord should scrape every instance {want}, got {targets}")
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy/grafana/provisioning/*/*.yml"))):
        f = os.path.relpath(path, ROOT)
        y = yaml.safe_load(read(f))
        if y.get("apiVersion") != 1:
            fail(f"{f}: apiVersion should be 1")
    done("compose")


def cmd_dockerfile():
    d = read("Dockerfile")
    for pat, what in [(r"^FROM rust:1-bookworm AS builder$", "builder stage FROM rust:1-bookworm AS builder"),
                      (r"cargo build --release --locked", "cargo build --release --locked"),
                      (r"^FROM debian:bookworm-slim$", "runtime stage FROM debian:bookworm-slim"),
                      (r"^USER (?!root|0\b)\S+", "a non-root USER"),
                      (r"COPY --from=builder \S+ /usr/local/bin/accord", "the accord binary copied from the builder")]:
        if not re.search(pat, d, re.M):
            fail(f"Dockerfile: missing {what}")
    ign = read(".dockerignore").split()
    if "target/" not in ign and "target" not in ign and "/target" not in ign:
        fail(".dockerignore should exclude target/")
    done("dockerfile")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("check", choices=["compose", "dockerfile"])
    {"compose": cmd_compose, "dockerfile": cmd_dockerfile}[ap.parse_args().check]()


if __name__ == "__main__":
    main()
