//! The `countersign` binary: see `countersign --help`.

fn main() -> std::process::ExitCode {
    countersign::startup::install_crypto_provider();
    countersign::cli::main()
}
