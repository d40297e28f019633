# The erasure ledger (keys.erasure_ledger_dir, docs/backup.md): patient ids
# and times of erasures, kept outside the database so that restoring an
# older backup cannot bring an erased patient's data key back. Every task
# mounts this encrypted file system over TLS through an access point that
# maps it to Clarity's user; each task appends to a file of its own.

resource "aws_efs_file_system" "ledger" {
  creation_token = "${var.name}-erasure-ledger"
  encrypted      = true
  kms_key_id     = aws_kms_key.data.arn

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_efs_backup_policy" "ledger" {
  file_system_id = aws_efs_file_system.ledger.id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_access_point" "ledger" {
  file_system_id = aws_efs_file_system.ledger.id

  posix_user {
    uid = 65532
    gid = 65532
  }

  root_directory {
    path = "/erasure-ledger"
    creation_info {
      owner_uid   = 65532
      owner_gid   = 65532
      permissions = "0700"
    }
  }
}

# The audit witness (audit.witness_dir, docs/audit.md, S-AUD-7) on the same
# encrypted file system, through an access point of its own: outside the
# database, so that whoever can rewrite the database cannot rewrite it.
resource "aws_efs_access_point" "witness" {
  file_system_id = aws_efs_file_system.ledger.id

  posix_user {
    uid = 65532
    gid = 65532
  }

  root_directory {
    path = "/audit-witness"
    creation_info {
      owner_uid   = 65532
      owner_gid   = 65532
      permissions = "0700"
    }
  }
}

resource "aws_efs_mount_target" "ledger" {
  count           = length(aws_subnet.private)
  file_system_id  = aws_efs_file_system.ledger.id
  subnet_id       = aws_subnet.private[count.index].id
  security_groups = [aws_security_group.ledger.id]
}

resource "aws_security_group" "ledger" {
  name        = "${var.name}-ledger"
  description = "NFS for the erasure ledger from Clarity tasks only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "ledger_from_tasks" {
  security_group_id            = aws_security_group.ledger.id
  description                  = "From Clarity tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_ledger" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "To the erasure ledger (EFS)"
  referenced_security_group_id = aws_security_group.ledger.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

# Mounting and writing through the two access points is the one thing the
# task role may do.
data "aws_iam_policy_document" "task_ledger" {
  statement {
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.ledger.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.ledger.arn, aws_efs_access_point.witness.arn]
    }
  }
}

resource "aws_iam_role_policy" "task_ledger" {
  name   = "erasure-ledger"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_ledger.json
}
