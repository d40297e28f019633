//! The `clarity` command: the HTTP server and the operator's tools.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = clarity_server::cli::Cli::parse();
    match clarity_server::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("clarity: error: {err}");
            ExitCode::FAILURE
        }
    }
}
