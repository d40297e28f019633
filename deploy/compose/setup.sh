#!/usr/bin/env bash
# One-shot setup jobs of deploy/compose.yaml, run in the clarity-setup image
# (deploy/Dockerfile, target `setup`) as root. Every job is safe to run again:
# Compose runs `secrets` and `openbao` on every `up`, and they change nothing
# once done.
#
#   clarity-setup secrets   passwords, a private CA and certificates, OpenBao's
#                           unseal key and Clarity's settings, each in the
#                           volume of the one service that reads it, owned by
#                           that service's user
#   clarity-setup openbao   initialise OpenBao (recovery key kept in the
#                           openbao-init volume, root token revoked), enable
#                           transit, create the `clarity` key, Clarity's
#                           policy and its periodic token
#   clarity-setup ca        print the CA certificate clients verify Clarity's
#                           HTTPS port with
set -euo pipefail

# Where the jobs find the volumes (compose.yaml mounts them there).
S=/secrets
# The users the services run as (compose.yaml `user:`).
POSTGRES_UID="${POSTGRES_UID:-999}"
REDIS_UID="${REDIS_UID:-999}"
OPENBAO_UID="${OPENBAO_UID:-100}"
CLARITY_UID="${CLARITY_UID:-65532}"
OPENBAO_ADDR="${OPENBAO_ADDR:-https://openbao:8200}"

say() { echo "clarity-setup: $*" >&2; }
die() { say "$*"; exit 1; }

# put FILE OWNER MODE: standard input into FILE, atomically, owned by OWNER.
put() {
    local tmp
    tmp="$(mktemp "$1.XXXXXX")"
    cat >"$tmp"
    chown "$2:$2" "$tmp"
    chmod "$3" "$tmp"
    mv -f "$tmp" "$1"
}

# issue NAME SAN OUTDIR: a P-256 server certificate signed by the CA in $work.
issue() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$work/$1-key.pem" -out "$work/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' "$2" >"$work/$1.ext"
    openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" \
        -CAcreateserial -days 825 -extfile "$work/$1.ext" -out "$work/$1.pem" 2>/dev/null
}

secrets() {
    for dir in "$S/postgres" "$S/redis" "$S/openbao" "$S/clarity" "$S/openbao-init"; do
        [ -d "$dir" ] || die "$dir is not mounted (deploy/compose.yaml mounts every secrets volume into this job)"
    done
    # Writable places of the services, owned by their users (new volumes
    # start out owned by root).
    chown "$POSTGRES_UID:$POSTGRES_UID" /data/postgres && chmod 0700 /data/postgres
    chown "$REDIS_UID:$REDIS_UID" /data/redis && chmod 0700 /data/redis
    chown "$OPENBAO_UID:$OPENBAO_UID" /data/openbao && chmod 0700 /data/openbao
    chown "$CLARITY_UID:$CLARITY_UID" /data/clarity /data/clarity-witness
    chmod 0700 /data/clarity /data/clarity-witness
    chmod 0700 "$S/openbao-init"
    # Clarity's settings file is written last: its presence means done.
    if [ -s "$S/clarity/clarity.toml" ]; then
        say "secrets are in place; nothing to do"
        return
    fi
    umask 077
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT

    # Hex passwords: 256 bits, and nothing that needs escaping in a URL.
    local postgres_password redis_password
    postgres_password="$(openssl rand -hex 32)"
    redis_password="$(openssl rand -hex 32)"

    # A private CA; its key signs the three certificates below and is then
    # discarded with $work, so nothing else can ever be signed by it.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=Clarity compose CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
    issue openbao "DNS:openbao,IP:127.0.0.1"
    issue postgres "DNS:postgres,IP:127.0.0.1"
    # Clarity's HTTPS port: published on the host's loopback.
    issue clarity "DNS:clarity,DNS:localhost,IP:127.0.0.1"

    printf '%s' "$postgres_password" | put "$S/postgres/password" "$POSTGRES_UID" 0400
    put "$S/postgres/tls.pem" "$POSTGRES_UID" 0444 <"$work/postgres.pem"
    put "$S/postgres/tls-key.pem" "$POSTGRES_UID" 0400 <"$work/postgres-key.pem"

    printf 'requirepass %s\nappendonly yes\nprotected-mode yes\n' "$redis_password" |
        put "$S/redis/redis.conf" "$REDIS_UID" 0400

    put "$S/openbao/ca.pem" "$OPENBAO_UID" 0444 <"$work/ca.pem"
    put "$S/openbao/tls.pem" "$OPENBAO_UID" 0444 <"$work/openbao.pem"
    put "$S/openbao/tls-key.pem" "$OPENBAO_UID" 0400 <"$work/openbao-key.pem"
    # OpenBao's static seal key (openbao.hcl): it unseals itself on restart.
    openssl rand 32 | put "$S/openbao/unseal.key" "$OPENBAO_UID" 0400

    # The CA for the `openbao` job too, which talks to OpenBao.
    put "$S/openbao-init/ca.pem" 0 0444 <"$work/ca.pem"
    put "$S/clarity/ca.pem" "$CLARITY_UID" 0444 <"$work/ca.pem"
    put "$S/clarity/tls.pem" "$CLARITY_UID" 0444 <"$work/clarity.pem"
    put "$S/clarity/tls-key.pem" "$CLARITY_UID" 0400 <"$work/clarity-key.pem"
    sed -e "s/@POSTGRES_PASSWORD@/$postgres_password/" \
        -e "s/@REDIS_PASSWORD@/$redis_password/" \
        /usr/local/share/clarity/clarity.toml.in | put "$S/clarity/clarity.toml" "$CLARITY_UID" 0400
    say "secrets written"
}

# bao METHOD PATH [JSON]: one OpenBao API call with $token; prints the body,
# fails on any status but 2xx.
bao() {
    local args=(-sS --fail-with-body --cacert "$S/openbao-init/ca.pem" -X "$1"
        -H "X-Vault-Request: true")
    [ -n "${token:-}" ] && args+=(-H "X-Vault-Token: $token")
    [ $# -ge 3 ] && args+=(-H "Content-Type: application/json" --data-binary "$3")
    curl "${args[@]}" "$OPENBAO_ADDR/v1/$2"
}

openbao() {
    local init="$S/openbao-init/init.json" token_file="$S/clarity/openbao_token" token=""
    # OpenBao answers /sys/health before it is initialised (status 501).
    local health=""
    for _ in $(seq 1 60); do
        health="$(curl -sS --cacert "$S/openbao-init/ca.pem" "$OPENBAO_ADDR/v1/sys/health" 2>/dev/null || true)"
        [ -n "$health" ] && break
        sleep 1
    done
    [ -n "$health" ] || die "OpenBao at $OPENBAO_ADDR did not answer within 60 s"

    if [ "$(jq -r .initialized <<<"$health")" != true ]; then
        # Static seal: recovery keys instead of unseal keys. The init answer
        # (recovery key and root token) is kept until the setup below is
        # done, so that a failed run can be run again.
        bao PUT sys/init '{"recovery_shares":1,"recovery_threshold":1}' |
            (umask 077; cat >"$init.tmp") && mv -f "$init.tmp" "$init"
        say "OpenBao initialised; its recovery key is in the openbao-init volume"
    elif [ -s "$token_file" ]; then
        token="$(cat "$token_file")"
        bao GET auth/token/lookup-self >/dev/null ||
            die "Clarity's OpenBao token (openbao_token in the clarity-secrets volume) is refused; docs/operations.md, 'Compose: OpenBao'"
        say "OpenBao is set up; Clarity's token is valid"
        return
    fi
    token="$(jq -r '.root_token // empty' "$init" 2>/dev/null || true)"
    [ -n "$token" ] || die "OpenBao is initialised but Clarity has no token, and the root token was revoked: generate one with the recovery key (docs/operations.md, 'Compose: OpenBao')"

    for _ in $(seq 1 30); do
        [ "$(bao GET sys/seal-status | jq -r .sealed)" = false ] && break
        sleep 1
    done
    bao GET sys/mounts | jq -e '."transit/"' >/dev/null ||
        bao POST sys/mounts/transit '{"type":"transit"}' >/dev/null
    # AES-256-GCM; not exportable, so the key never leaves OpenBao.
    bao GET transit/keys/clarity >/dev/null 2>&1 ||
        bao POST transit/keys/clarity '{"type":"aes256-gcm96"}' >/dev/null
    # Clarity may wrap and unwrap data keys, read the key's versions, rotate
    # it (clarity keys rotate) and retire old versions (clarity keys retire).
    local policy
    policy='path "transit/encrypt/clarity" { capabilities = ["update"] }
path "transit/decrypt/clarity" { capabilities = ["update"] }
path "transit/rewrap/clarity" { capabilities = ["update"] }
path "transit/keys/clarity" { capabilities = ["read"] }
path "transit/keys/clarity/rotate" { capabilities = ["update"] }
path "transit/keys/clarity/config" { capabilities = ["update"] }'
    bao PUT sys/policies/acl/clarity "$(jq -n --arg p "$policy" '{policy: $p}')" >/dev/null
    # A periodic token of its own: it lives as long as Clarity renews it,
    # which Clarity does at half its period (docs/keys-openbao.md).
    bao POST auth/token/create-orphan '{"policies":["clarity"],"period":"24h","display_name":"clarity"}' |
        jq -r .auth.client_token | put "$token_file" "$CLARITY_UID" 0400
    # The root token has done its work: revoke it, and keep only the
    # recovery key (a new root token can be generated with it).
    bao POST auth/token/revoke-self >/dev/null
    jq 'del(.root_token)' "$init" | (umask 077; cat >"$init.tmp") && mv -f "$init.tmp" "$init"
    say "OpenBao: transit key 'clarity', Clarity's policy and token ready; root token revoked"
}

case "${1:-}" in
    secrets) secrets ;;
    openbao) openbao ;;
    ca) cat "$S/clarity/ca.pem" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; [ "${1:-}" = --help ] ;;
esac
