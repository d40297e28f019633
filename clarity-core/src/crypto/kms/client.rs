//! The SDK side of the KMS provider: the client (the standard AWS
//! credential chain, rustls on ring, a timeout per attempt, the SDK's
//! standard retries with backoff), and KMS errors as Clarity's. Messages
//! name the operation, the key id and KMS's error code, never credentials,
//! plaintexts or ciphertexts.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;

use super::KmsSettings;
use crate::error::{Error, Result};

/// Attempts per request (the first try plus retries of throttling, server
/// errors, timeouts and lost connections).
const ATTEMPTS: u32 = 3;
/// Delay before the first retry (with jitter; grows after each).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Timeout of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A KMS client for `settings`: credentials from the standard AWS chain
/// (environment, profile, web identity, ECS and EC2 roles), resolved when
/// the first request is signed.
///
/// # Errors
/// [`Error::Config`] when no region is configured anywhere.
pub(super) async fn connect(settings: &KmsSettings) -> Result<aws_sdk_kms::Client> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(ATTEMPTS)
                .with_initial_backoff(FIRST_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(aws_sdk_kms::config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(Error::config(
            "keys.kms_region",
            "not set, and the AWS configuration (AWS_REGION, the profile) names no region",
        ));
    }
    // The endpoint is KMS's only: credentials (STS for web identity) keep
    // theirs.
    let mut config = aws_sdk_kms::config::Builder::from(&shared);
    if let Some(url) = &settings.endpoint {
        config = config.endpoint_url(url);
    }
    Ok(aws_sdk_kms::Client::from_conf(config.build()))
}

/// What a KMS error means for Clarity.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// The ciphertext or its encryption context does not match.
    Integrity,
    /// KMS is out of reach or overloaded: a 503, retry later.
    Unavailable,
    /// Refused: the key or the credentials need an operator.
    Refused,
}

/// The class of a KMS error code and HTTP status.
fn classify(code: Option<&str>, status: u16) -> Class {
    match code {
        Some("InvalidCiphertextException" | "IncorrectKeyException") => Class::Integrity,
        Some(
            "DependencyTimeoutException"
            | "KMSInternalException"
            | "KeyUnavailableException"
            | "ThrottlingException"
            | "LimitExceededException",
        ) => Class::Unavailable,
        _ if status >= 500 => Class::Unavailable,
        _ => Class::Refused,
    }
}

/// What an operator should do about a refusal with `code`.
fn remedy(code: &str, key_id: &str) -> String {
    match code {
        "DisabledException" => {
            format!("the KMS key {key_id} is disabled; enable it, or configure another key")
        }
        "KMSInvalidStateException" => format!(
            "the KMS key {key_id} cannot be used in its state (pending deletion?); cancel the deletion or configure another key"
        ),
        "NotFoundException" => format!(
            "the KMS key {key_id} does not exist in this account and region (keys.kms_key_id, keys.kms_previous_key_ids, keys.kms_region)"
        ),
        _ => format!(
            "refused ({code}); check the AWS credentials and the IAM policy for the key {key_id} (docs/keys-kms.md)"
        ),
    }
}

/// A failed KMS request doing `what` with the key `key_id`, as Clarity's
/// error: [`Error::Integrity`] for a ciphertext or context that does not
/// match, [`Error::Unavailable`] once the SDK's retries are spent,
/// [`Error::Key`] for refusals.
pub(super) fn error<E>(what: &str, key_id: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code();
            let status = service.raw().status().as_u16();
            match classify(code, status) {
                Class::Integrity => Error::Integrity,
                Class::Unavailable => Error::Unavailable {
                    message: format!(
                        "KMS {what}: the key service is unavailable ({})",
                        code.unwrap_or("server error")
                    ),
                },
                Class::Refused => Error::key(format!(
                    "KMS {what}: {}",
                    remedy(code.unwrap_or("unknown error"), key_id)
                )),
            }
        }
        // Failed before anything was sent, without a retryable kind: most
        // often no credentials could be found or loaded.
        SdkError::DispatchFailure(dispatch)
            if dispatch.is_other() && dispatch.as_other().is_none() =>
        {
            Error::key(format!(
                "KMS {what} with the key {key_id} failed before it was sent (AWS credentials?): {}",
                crate::error::causes(&err)
            ))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            tracing::warn!(operation = what, error = %crate::error::causes(&err), "KMS request failed");
            Error::Unavailable {
                message: format!("KMS {what}: the key service did not answer"),
            }
        }
        _ => Error::key(format!(
            "KMS {what} with the key {key_id} failed: {}",
            crate::error::causes(&err)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_errors_are_classified() {
        for code in ["InvalidCiphertextException", "IncorrectKeyException"] {
            assert_eq!(classify(Some(code), 400), Class::Integrity, "{code}");
        }
        for code in [
            "ThrottlingException",
            "KMSInternalException",
            "KeyUnavailableException",
        ] {
            assert_eq!(classify(Some(code), 400), Class::Unavailable, "{code}");
        }
        assert_eq!(classify(None, 503), Class::Unavailable);
        for code in [
            "DisabledException",
            "AccessDeniedException",
            "NotFoundException",
        ] {
            assert_eq!(classify(Some(code), 400), Class::Refused, "{code}");
        }
        let disabled = remedy("DisabledException", "alias/clarity");
        assert!(disabled.contains("alias/clarity") && disabled.contains("disabled"));
        let denied = remedy("AccessDeniedException", "k-1");
        assert!(denied.contains("IAM policy") && denied.contains("k-1"));
    }
}
