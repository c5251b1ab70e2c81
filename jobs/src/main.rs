//! The `opnet` command line; everything lives in the library.

fn main() -> std::process::ExitCode {
    opnet::cli::main()
}
