# Clarity on ECS Fargate: tasks in private subnets behind the load balancer,
# read-only root file system, non-root user, secrets from Secrets Manager,
# logs to CloudWatch, CPU-based auto scaling.
#
# Migrations before an upgrade: run the new task definition once with the
# command "migrate" (docs/operations.md, "Upgrade"):
#
#   aws ecs run-task --cluster <name> --launch-type FARGATE \
#     --task-definition <name> --network-configuration '...private subnets, tasks SG...' \
#     --overrides '{"containerOverrides":[{"name":"clarity","command":["migrate"]}]}'

locals {
  # Clarity's settings that are not secrets (docs/configuration.md).
  clarity_environment = {
    CLARITY_LISTEN                             = "0.0.0.0:${var.container_port}"
    CLARITY_DATA_DIR                           = "/var/lib/clarity"
    CLARITY_LOG_FORMAT                         = "json"
    CLARITY_LOG_LEVEL                          = "info"
    CLARITY_STORE_BACKEND                      = "postgres"
    CLARITY_STORE_POOL_SIZE                    = tostring(var.store_pool_size)
    CLARITY_STORE_POSTGRES_CA_CERT             = "/run/clarity/postgres-ca.pem"
    CLARITY_KEYS_PROVIDER                      = "transit"
    CLARITY_KEYS_TRANSIT_ADDR                  = var.transit_addr
    CLARITY_KEYS_TRANSIT_MOUNT                 = "transit"
    CLARITY_KEYS_TRANSIT_KEY                   = "clarity"
    CLARITY_KEYS_TRANSIT_TOKEN_FILE            = "/run/clarity/transit-token"
    CLARITY_KEYS_ERASURE_LEDGER_DIR            = "/var/lib/clarity-ledger"
    CLARITY_AUDIT_WITNESS_DIR                  = "/var/lib/clarity-witness"
    CLARITY_AUDIT_SERVER_ADDRESS               = aws_lb.main.dns_name
    CLARITY_ACCESS_REQUIRE_MFA_FOR_BREAK_GLASS = "true"
  }

  # Secret settings: ECS reads them from Secrets Manager at task start.
  clarity_secrets = {
    CLARITY_STORE_POSTGRES_URL = aws_secretsmanager_secret.postgres_url.arn
    CLARITY_CACHE_REDIS_URL    = aws_secretsmanager_secret.redis_url.arn
  }
}

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Used by ECS itself to pull the image, write logs and fetch the secrets.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.postgres_url.arn,
      aws_secretsmanager_secret.redis_url.arn,
      aws_secretsmanager_secret.transit_token.arn,
    ]
  }

  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "read-clarity-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

# The role the server runs as: Clarity calls no AWS API; the role may only
# mount the erasure ledger (efs.tf).
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_ecs_task_definition" "clarity" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Task-local scratch space shared by the two containers below.
  volume {
    name = "run-clarity"
  }

  volume {
    name = "data"
  }

  volume {
    name = "tmp"
  }

  # The erasure ledger, shared by every task (efs.tf).
  volume {
    name = "erasure-ledger"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.ledger.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.ledger.id
        iam             = "ENABLED"
      }
    }
  }

  # The audit witness, shared by every task (efs.tf).
  volume {
    name = "audit-witness"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.ledger.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.witness.id
        iam             = "ENABLED"
      }
    }
  }

  container_definitions = jsonencode([
    {
      # Clarity reads the transit token (keys.transit_token_file) and the
      # database's CA bundle (store.postgres_ca_cert) from files, and ECS
      # passes values as environment variables: this short-lived container
      # writes them into files (the token readable by Clarity's user alone)
      # and exits before the server starts.
      name                   = "prepare-files"
      image                  = "public.ecr.aws/docker/library/busybox:1.37.0"
      essential              = false
      readonlyRootFilesystem = true
      command = [
        "sh", "-c",
        "umask 077 && printf '%s' \"$TRANSIT_TOKEN\" > /run/clarity/transit-token && chown 65532:65532 /run/clarity/transit-token && chmod 0400 /run/clarity/transit-token && printf '%s' \"$POSTGRES_CA\" > /run/clarity/postgres-ca.pem && chmod 0444 /run/clarity/postgres-ca.pem",
      ]
      environment = [
        { name = "POSTGRES_CA", value = local.db_ca_bundle_pem },
      ]
      secrets = [
        { name = "TRANSIT_TOKEN", valueFrom = aws_secretsmanager_secret.transit_token.arn },
      ]
      mountPoints = [
        { sourceVolume = "run-clarity", containerPath = "/run/clarity", readOnly = false },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.clarity.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "prepare-files"
        }
      }
    },
    {
      name                   = "clarity"
      image                  = var.image
      essential              = true
      command                = ["serve"]
      user                   = "65532:65532"
      readonlyRootFilesystem = true
      # SIGTERM, then at most 10 s of draining and the audit flush.
      stopTimeout = 30
      portMappings = [
        { containerPort = var.container_port, protocol = "tcp" },
      ]
      environment = [for key, value in local.clarity_environment : { name = key, value = value }]
      secrets     = [for key, arn in local.clarity_secrets : { name = key, valueFrom = arn }]
      linuxParameters = {
        capabilities       = { drop = ["ALL"] }
        initProcessEnabled = false
      }
      mountPoints = [
        { sourceVolume = "run-clarity", containerPath = "/run/clarity", readOnly = true },
        { sourceVolume = "data", containerPath = "/var/lib/clarity", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
        { sourceVolume = "erasure-ledger", containerPath = "/var/lib/clarity-ledger", readOnly = false },
        { sourceVolume = "audit-witness", containerPath = "/var/lib/clarity-witness", readOnly = false },
      ]
      dependsOn = [
        { containerName = "prepare-files", condition = "SUCCESS" },
      ]
      # The image's probe: GET /health/ready on CLARITY_LISTEN.
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/clarity-probe"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.clarity.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "clarity"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "clarity" {
  name                              = var.name
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.clarity.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "1.4.0"
  health_check_grace_period_seconds = 60
  propagate_tags                    = "SERVICE"
  enable_execute_command            = false

  # Never below current capacity during a deployment; roll back a
  # deployment whose tasks do not become healthy.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.clarity.arn
    container_name   = "clarity"
    container_port   = var.container_port
  }

  # Auto scaling owns the count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https]
}

resource "aws_appautoscaling_target" "clarity" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.clarity.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  service_namespace  = aws_appautoscaling_target.clarity.service_namespace
  resource_id        = aws_appautoscaling_target.clarity.resource_id
  scalable_dimension = aws_appautoscaling_target.clarity.scalable_dimension
  policy_type        = "TargetTrackingScaling"

  target_tracking_scaling_policy_configuration {
    target_value       = 70
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
