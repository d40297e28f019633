#!/usr/bin/env bash
# Prepares OpenBao in deploy/compose.yaml as Clarity's transit key provider.
#
#   bootstrap-openbao.sh          first time: initialise, unseal, enable transit,
#                                 create the `clarity` key, a policy and Clarity's token
#   bootstrap-openbao.sh unseal   after every OpenBao restart
#
# The unseal key and the root token are written to secrets/openbao-init.json
# (0600). That is acceptable for evaluation on one host only: in production,
# split unseal keys among people (or use auto-unseal) and revoke the root
# token after bootstrap.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$here/secrets"
compose=(docker compose -f "$here/../compose.yaml")
bao() { "${compose[@]}" exec -T "${bao_env[@]}" openbao bao "$@"; }
bao_env=()

unseal() {
    local key
    key="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["unseal_keys_b64"][0])' "$dir/openbao-init.json")"
    printf '%s\n' "$key" | bao operator unseal - >/dev/null
    echo "bootstrap-openbao: unsealed"
}

if [ "${1:-}" = "unseal" ]; then
    unseal
    exit 0
fi

if [ -s "$dir/openbao-init.json" ]; then
    echo "bootstrap-openbao: already initialised ($dir/openbao-init.json); use 'unseal'" >&2
    exit 1
fi
(umask 077; bao operator init -key-shares=1 -key-threshold=1 -format=json >"$dir/openbao-init.json")
unseal
root_token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_token"])' "$dir/openbao-init.json")"
bao_env=(-e "BAO_TOKEN=$root_token")

bao secrets enable -path=transit transit
# AES-256-GCM key; exportable stays off, so the key never leaves OpenBao.
bao write -f transit/keys/clarity type=aes256-gcm96
# Clarity may wrap and unwrap data keys, read the key's versions and
# rotate it (clarity keys rotate); nothing else.
bao policy write clarity - <<'POLICY'
path "transit/encrypt/clarity" { capabilities = ["update"] }
path "transit/decrypt/clarity" { capabilities = ["update"] }
path "transit/rewrap/clarity"  { capabilities = ["update"] }
path "transit/keys/clarity"    { capabilities = ["read"] }
path "transit/keys/clarity/rotate" { capabilities = ["update"] }
path "transit/keys/clarity/config" { capabilities = ["update"] }
POLICY
# A periodic token: it lives as long as it is renewed, and it is Clarity's own.
# Clarity renews it at half its period (docs/keys-openbao.md).
(umask 077; bao token create -policy=clarity -period=24h -orphan -field=token >"$dir/openbao_token")
# The secret-file rule (docs/security.md, "Secret files"): the container
# user (65532) reads a bind-mounted secret that root owns through its group,
# mode 0440; a file other users may read is refused.
if [ "$(id -u)" = 0 ]; then
    chown 0:65532 "$dir/openbao_token"
    chmod 0440 "$dir/openbao_token"
else
    echo "bootstrap-openbao: as root, run: chown 0:65532 $dir/openbao_token && chmod 0440 $dir/openbao_token" >&2
fi
echo "bootstrap-openbao: transit key 'clarity' and Clarity's token are ready"
