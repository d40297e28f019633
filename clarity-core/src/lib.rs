#![doc = include_str!("../README.md")]
// Without the `testing` feature the raw layers below are crate-private
// (S-API-1): their items are `pub` for the testing build, so the lints that
// would flag them as unreachable there are quiet here.
#![cfg_attr(
    not(feature = "testing"),
    allow(
        unreachable_pub,
        private_interfaces,
        private_bounds,
        dead_code,
        unused_imports
    )
)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("clarity-core needs a storage backend: enable the `sqlite` or `postgres` feature");

pub mod access;
pub mod audit;
#[cfg(feature = "testing")]
pub mod auth;
#[cfg(not(feature = "testing"))]
mod auth;
pub mod backup;
pub mod cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
mod host;
pub mod model;
pub mod service;
#[cfg(feature = "testing")]
pub mod store;
#[cfg(not(feature = "testing"))]
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timings;
mod tls;
#[cfg(feature = "testing")]
pub mod vault;
#[cfg(not(feature = "testing"))]
mod vault;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use service::Clarity;

/// The repository README's Rust example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct RepositoryReadme;
