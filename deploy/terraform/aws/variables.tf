variable "name" {
  description = "Prefix of every resource name (letters, digits and hyphens)."
  type        = string
  default     = "clarity"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into public and private subnets, one of each per availability zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread subnets, the database standby, Redis replicas and tasks over (2 or 3)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3."
  }
}

variable "allowed_ingress_cidrs" {
  description = "Client CIDR blocks allowed to reach the load balancer on HTTPS. Narrow it to your clients' networks."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate ARN for the load balancer's HTTPS listener."
  type        = string
}

variable "image" {
  description = "Clarity container image, pinned by digest (repository@sha256:...) so a task never runs an untested build."
  type        = string
}

variable "container_port" {
  description = "Port Clarity listens on inside the task; becomes CLARITY_LISTEN=0.0.0.0:<port>."
  type        = number
  default     = 8080
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = one vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 2048
}

variable "desired_count" {
  description = "Tasks to run at first; auto scaling moves it between min_count and max_count."
  type        = number
  default     = 2
}

variable "min_count" {
  description = "Fewest tasks (at least 2 keeps the service up through a zone or task failure)."
  type        = number
  default     = 2
}

variable "max_count" {
  description = "Most tasks. Keep max_count x store_pool_size below the database's max_connections."
  type        = number
  default     = 8
}

variable "store_pool_size" {
  description = "PostgreSQL connections per task (CLARITY_STORE_POOL_SIZE)."
  type        = number
  default     = 16
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m7g.large"
}

variable "db_engine_version" {
  description = "PostgreSQL major version for RDS."
  type        = string
  default     = "17"
}

variable "db_allocated_storage" {
  description = "Initial database storage in GiB; storage grows automatically up to db_max_allocated_storage."
  type        = number
  default     = 100
}

variable "db_max_allocated_storage" {
  description = "Upper bound of storage autoscaling in GiB."
  type        = number
  default     = 1000
}

variable "db_multi_az" {
  description = "Keep a synchronous standby in another availability zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated backups and point-in-time recovery (1-35)."
  type        = number
  default     = 35

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_force_ssl" {
  description = "Refuse database connections without TLS (rds.force_ssl). Clarity itself always connects over TLS and verifies the database's certificate against db_ca_bundle_pem (store.postgres_ca_cert); this also refuses any other client that does not."
  type        = bool
  default     = true
}

variable "db_ca_bundle_pem" {
  description = "PEM of the CAs that sign RDS certificates in var.region, which Clarity verifies the database against. Default (null): fetched at plan time from https://truststore.pki.rds.amazonaws.com/<region>/<region>-bundle.pem."
  type        = string
  default     = null

  validation {
    condition     = var.db_ca_bundle_pem == null || can(regex("-----BEGIN CERTIFICATE-----", var.db_ca_bundle_pem))
    error_message = "db_ca_bundle_pem must hold PEM certificates."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_engine_version" {
  description = "ElastiCache Redis engine version."
  type        = string
  default     = "7.1"
}

variable "transit_addr" {
  description = "URL of the OpenBao/Vault server holding Clarity's transit key (CLARITY_KEYS_TRANSIT_ADDR), reachable from the private subnets over HTTPS."
  type        = string
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the server's logs. The audit trail itself lives in the database for six years; logs hold no PHI."
  type        = number
  default     = 400
}

variable "deletion_protection" {
  description = "Protect the database, Redis snapshots and load balancer from deletion; turn off only to tear an environment down."
  type        = bool
  default     = true
}
