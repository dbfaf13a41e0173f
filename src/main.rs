#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    otel_admission::cli::main()
}
