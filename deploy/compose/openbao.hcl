# OpenBao for deploy/compose.yaml: one node, file storage on a volume, TLS
# with the certificate from init-secrets.sh. Sealed after every restart:
# bootstrap-openbao.sh unseal.

ui = false

storage "file" {
  path = "/openbao/file"
}

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/run/secrets/openbao_tls_cert"
  tls_key_file  = "/run/secrets/openbao_tls_key"
  # TLS 1.2 is the floor (S-TLS-1); 1.3 is negotiated when both sides can.
  tls_min_version = "tls12"
}

api_addr = "https://openbao:8200"
