# OpenBao for deploy/compose.yaml: one node, integrated (raft) storage on a
# volume, TLS
# with the certificate the `secrets` job issued. It unseals itself on every
# start with the static seal key from the same job (OpenBao's "static" seal):
# acceptable for one host, where that key sits beside the data it protects
# just as an unseal key would; in production use a KMS or HSM seal, or
# Shamir keys held by people.

ui = false

storage "raft" {
  path    = "/openbao/file"
  node_id = "openbao"
}

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/run/secrets/tls.pem"
  tls_key_file  = "/run/secrets/tls-key.pem"
  # TLS 1.2 is the floor (S-TLS-1); 1.3 is negotiated when both sides can.
  tls_min_version = "tls12"
}

seal "static" {
  current_key_id = "compose-1"
  current_key    = "file:///run/secrets/unseal.key"
}

api_addr     = "https://openbao:8200"
cluster_addr = "https://openbao:8201"
