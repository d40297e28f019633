#!/usr/bin/env bash
# Creates the secret files deploy/compose.yaml mounts: database and Redis
# passwords, Clarity's secret settings, and a private CA with certificates
# for OpenBao and PostgreSQL. Run once, before the first `docker compose up`; it refuses to
# overwrite existing secrets (rotate them deliberately, one at a time).
#
# Needs openssl. The directory is 0700 so that other users of the host cannot
# read it; the files inside are 0644 because the containers read them under
# their own user ids (postgres, redis, openbao, 65532), and a bind-mounted
# file keeps its host owner.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$here/secrets"

if [ -e "$dir/clarity.toml" ]; then
    echo "init-secrets: $dir already holds secrets; not overwriting them" >&2
    exit 1
fi
command -v openssl >/dev/null || { echo "init-secrets: openssl is required" >&2; exit 1; }
umask 022
mkdir -p "$dir"
chmod 0700 "$dir"

# Hex passwords: 256 bits, and nothing that needs escaping inside a URL.
postgres_password="$(openssl rand -hex 32)"
redis_password="$(openssl rand -hex 32)"

printf '%s' "$postgres_password" >"$dir/postgres_password"
printf 'requirepass %s\nappendonly yes\nprotected-mode yes\n' "$redis_password" >"$dir/redis.conf"
sed -e "s/@POSTGRES_PASSWORD@/$postgres_password/" \
    -e "s/@REDIS_PASSWORD@/$redis_password/" \
    "$here/clarity.toml.in" >"$dir/clarity.toml"

# A private CA, and server certificates signed by it for the names Clarity
# uses on the compose network (and 127.0.0.1 for each container's own CLI).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=Clarity compose CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null

# issue NAME: NAME.pem and NAME-key.pem for DNS:NAME and IP:127.0.0.1.
issue() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=$1" -keyout "$dir/$1-key.pem" -out "$dir/$1.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$1" >"$dir/$1.ext"
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -days 825 -extfile "$dir/$1.ext" -out "$dir/$1.pem" 2>/dev/null
    rm -f "$dir/$1.csr" "$dir/$1.ext" "$dir/ca.srl"
}
issue openbao
issue postgres
# The CA key signs nothing else: keep it off the host's disk once used.
rm -f "$dir/ca-key.pem"

# Filled in by bootstrap-openbao.sh; compose needs the file to exist.
: >"$dir/openbao_token"
echo "init-secrets: wrote $dir"
