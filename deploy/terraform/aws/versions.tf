terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    http = {
      source  = "hashicorp/http"
      version = "~> 3.4"
    }
  }

  # The state holds the generated database and Redis passwords: keep it in
  # an encrypted, access-controlled backend, e.g.
  #
  #   backend "s3" {
  #     bucket       = "example-terraform-state"
  #     key          = "clarity/terraform.tfstate"
  #     region       = "us-east-1"
  #     encrypt      = true
  #     kms_key_id   = "alias/terraform-state"
  #     use_lockfile = true
  #   }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Application = "clarity"
      ManagedBy   = "terraform"
    })
  }
}
