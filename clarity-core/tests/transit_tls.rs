//! The transit key provider over TLS (S-KEY-1, S-TLS-1): `scripts/test`
//! starts OpenBao with TLS, and the provider verifies its certificate
//! against `keys.transit_ca_cert`. Without that CA (system roots only), with
//! another CA, or over plain HTTP to the TLS port, no connection is made.

use clarity_core::ErrorKind;
use clarity_core::crypto::TransitKeyProvider;
use clarity_core::testing::{self, in_ci};

fn other_ca() -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    params.self_signed(&key).expect("ca").pem().into_bytes()
}

// S-KEY-1, S-TLS-1
#[tokio::test]
async fn transit_over_tls_verifies_the_server() {
    let Some(settings) = testing::transit_settings() else {
        return;
    };
    if !settings.addr.starts_with("https://") {
        assert!(
            !in_ci(),
            "CI runs OpenBao with TLS: {} is not https",
            testing::OPENBAO_ADDR_VAR
        );
        eprintln!("SKIPPED: transit TLS test needs an https:// OpenBao address");
        return;
    }
    assert!(
        settings.ca_cert_pem.is_some(),
        "an https:// OpenBao needs {}",
        testing::OPENBAO_CA_CERT_VAR
    );
    TransitKeyProvider::connect(settings.clone())
        .await
        .expect("verified against the configured CA");

    let mut system_roots = settings.clone();
    system_roots.ca_cert_pem = None;
    let mut stranger = settings.clone();
    stranger.ca_cert_pem = Some(other_ca());
    let mut plain = settings.clone();
    plain.addr = settings.addr.replacen("https://", "http://", 1);
    for (case, s) in [
        ("system roots only", system_roots),
        ("another CA", stranger),
        ("plain HTTP to the TLS port", plain),
    ] {
        let err = TransitKeyProvider::connect(s)
            .await
            .expect_err("no unverified transit connection");
        assert!(
            matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Key),
            "{case}: {err}"
        );
    }
}
