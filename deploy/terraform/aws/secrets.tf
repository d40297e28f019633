# Secrets Manager, encrypted with the data key. ECS injects the URLs into
# the task at start; they never appear in the task definition.

resource "aws_secretsmanager_secret" "postgres_url" {
  name        = "${var.name}/postgres-url"
  description = "Clarity's store.postgres_url (with the password)"
  kms_key_id  = aws_kms_key.data.arn
}

resource "aws_secretsmanager_secret_version" "postgres_url" {
  secret_id     = aws_secretsmanager_secret.postgres_url.id
  secret_string = "postgres://clarity:${random_password.db.result}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/clarity"
}

resource "aws_secretsmanager_secret" "redis_url" {
  name        = "${var.name}/redis-url"
  description = "Clarity's cache.redis_url (TLS, with the AUTH token)"
  kms_key_id  = aws_kms_key.data.arn
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:6379"
}

# The transit token is issued by the OpenBao/Vault operators, not by
# Terraform: set its value out of band, so it never enters the state:
#
#   aws secretsmanager put-secret-value --secret-id <name>/transit-token --secret-string file://token
resource "aws_secretsmanager_secret" "transit_token" {
  name        = "${var.name}/transit-token"
  description = "Clarity's token for the transit key provider"
  kms_key_id  = aws_kms_key.data.arn
}
