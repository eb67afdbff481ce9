//! The `countersign` binary: see `countersign --help`.

/// jemalloc rather than the system's malloc, for memory per connection: a
/// long-polling agent's connection holds hyper's 8 KiB read and write
/// buffers while it waits, of which a few hundred bytes are ever written.
/// jemalloc keeps its bookkeeping outside the blocks, so the rest of those
/// pages is never made resident; glibc's malloc writes chunk headers and
/// free-list links into them (docs/BENCH.md, g). Set in the binary only:
/// the library's other users (the benchmark, the fuzz targets) keep theirs.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    countersign::startup::install_crypto_provider();
    countersign::cli::main()
}
