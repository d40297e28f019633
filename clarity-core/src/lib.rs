#![doc = include_str!("../README.md")]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("clarity-core needs a storage backend: enable the `sqlite` or `postgres` feature");

pub mod access;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod service;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timings;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use service::Clarity;

/// The repository README's Rust example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct RepositoryReadme;
