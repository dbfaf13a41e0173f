#![forbid(unsafe_code)]

// The admission path allocates many small, short-lived objects (a decoded Pod,
// the patch); mimalloc serves them markedly faster than glibc's malloc
// (docs/PERFORMANCE.md has the before and after).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    otel_admission::cli::main()
}
