//! The Clarity HTTP server and command-line tool: a thin layer over
//! `clarity-core` that translates HTTP to core calls and never decides
//! anything itself.

mod backup;
pub mod cli;
mod disclosures;
mod http;
mod logging;
mod metrics;
mod ops;
mod output;
mod password_input;
pub mod serve;
mod service_accounts;
mod tls;
