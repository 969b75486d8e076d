//! The `noise-echo` binary: everything lives in the library; see `noise_echo::cli`.

fn main() -> std::process::ExitCode {
    noise_echo::cli::main()
}
