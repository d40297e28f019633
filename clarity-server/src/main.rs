//! The `clarity` command: the HTTP server and the operator's tools.

fn main() -> std::process::ExitCode {
    clarity_server::cli::main()
}
