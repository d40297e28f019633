//! `clarity service-account`: create, rotate and delete service accounts as
//! the local operator. Each new client secret is printed once, on standard
//! output (in JSON: `client_secret`); only its hash is kept.

use clarity_core::model::RoleSet;
use clarity_core::service::{ClientSecret, NewServiceAccount, SecretRotation};
use clarity_core::{Config, Result};

use crate::ops::with_clarity;
use crate::output::{Output, secret_text};

fn secret_output(secret: &ClientSecret) -> Result<Output> {
    let previous = secret
        .previous_secret_expires_at
        .map(|until| format!("previous secret works until: {}\n", until.to_rfc3339()))
        .unwrap_or_default();
    let text = secret_text(format_args!(
        "client_id: {}\nclient_secret: {}\n{previous}\
         (the secret is shown this once: store it where the client reads it)\n",
        secret.client_id,
        secret.client_secret.expose()
    ));
    Output::new(secret, text)
}

pub(crate) async fn create(
    config: Config,
    name: String,
    roles: &[String],
    display_name: Option<String>,
) -> Result<Output> {
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
        secret_output(&created)
    })
    .await
}

pub(crate) async fn rotate(
    config: Config,
    id: uuid::Uuid,
    overlap_secs: Option<u64>,
) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let rotated = clarity
            .rotate_service_secret(
                &clarity.operator().await?,
                id,
                SecretRotation { overlap_secs },
            )
            .await?;
        secret_output(&rotated)
    })
    .await
}

pub(crate) async fn delete(config: Config, id: uuid::Uuid) -> Result<Output> {
    with_clarity(config, async |clarity| {
        clarity
            .delete_service_account(&clarity.operator().await?, id)
            .await?;
        Output::new(
            &serde_json::json!({ "id": id, "deleted": true }),
            format!(
                "deleted service account {id}: its secrets are destroyed and its sessions ended\n"
            ),
        )
    })
    .await
}
