output "load_balancer_dns_name" {
  description = "DNS name of the load balancer: point your domain (the certificate's name) at it with a CNAME or alias record."
  value       = aws_lb.main.dns_name
}

output "ecs_cluster_name" {
  description = "ECS cluster running the service (for `aws ecs run-task` migrations)."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.clarity.name
}

output "task_definition_arn" {
  description = "Task definition of the current revision (for `aws ecs run-task` migrations)."
  value       = aws_ecs_task_definition.clarity.arn
}

output "private_subnet_ids" {
  description = "Private subnets of the tasks (for `aws ecs run-task --network-configuration`)."
  value       = aws_subnet.private[*].id
}

output "task_security_group_id" {
  description = "Security group of the tasks (for `aws ecs run-task --network-configuration`)."
  value       = aws_security_group.tasks.id
}

output "db_endpoint" {
  description = "RDS endpoint (host:port), reachable from the private subnets only."
  value       = aws_db_instance.main.endpoint
}

output "redis_primary_endpoint" {
  description = "ElastiCache primary endpoint, reachable from the private subnets only."
  value       = aws_elasticache_replication_group.main.primary_endpoint_address
}

output "transit_token_secret_arn" {
  description = "Secrets Manager secret to fill with Clarity's transit token before the first deployment."
  value       = aws_secretsmanager_secret.transit_token.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the server."
  value       = aws_cloudwatch_log_group.clarity.name
}

output "kms_data_key_arn" {
  description = "KMS key encrypting the database, its snapshots, Redis and the secrets."
  value       = aws_kms_key.data.arn
}
