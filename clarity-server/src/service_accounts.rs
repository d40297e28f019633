//! `clarity service-account`: create, rotate and delete service accounts as
//! the local operator. Each new client secret is printed once, on standard
//! output; only its hash is kept.

use clarity_core::model::RoleSet;
use clarity_core::service::{ClientSecret, NewServiceAccount, SecretRotation};
use clarity_core::{Config, Result};

use crate::ops::with_clarity;

fn print_secret(secret: &ClientSecret) {
    println!("client_id: {}", secret.client_id);
    println!("client_secret: {}", secret.client_secret.expose());
    if let Some(until) = secret.previous_secret_expires_at {
        println!("previous secret works until: {}", until.to_rfc3339());
    }
    println!("(the secret is shown this once: store it where the client reads it)");
}

pub(crate) async fn create(
    config: Config,
    name: String,
    roles: &[String],
    display_name: Option<String>,
) -> Result<()> {
    let roles = RoleSet::parse(roles)?;
    with_clarity(config, async |clarity| {
        let account = NewServiceAccount {
            name,
            roles,
            display_name,
        };
        let created = clarity
            .create_service_account(&clarity.operator().await?, account)
            .await?;
        print_secret(&created);
        Ok(())
    })
    .await
}

pub(crate) async fn rotate(
    config: Config,
    id: uuid::Uuid,
    overlap_secs: Option<u64>,
) -> Result<()> {
    with_clarity(config, async |clarity| {
        let rotated = clarity
            .rotate_service_secret(
                &clarity.operator().await?,
                id,
                SecretRotation { overlap_secs },
            )
            .await?;
        print_secret(&rotated);
        Ok(())
    })
    .await
}

pub(crate) async fn delete(config: Config, id: uuid::Uuid) -> Result<()> {
    with_clarity(config, async |clarity| {
        clarity
            .delete_service_account(&clarity.operator().await?, id)
            .await?;
        println!("deleted service account {id}: its secrets are destroyed and its sessions ended");
        Ok(())
    })
    .await
}
