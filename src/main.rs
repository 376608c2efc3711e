//! The `hostguard` binary: install the TLS crypto provider, parse arguments, run.

use clap::Parser;

/// mimalloc instead of the system allocator: a review allocates and frees hundreds of small
/// strings and maps, and with glibc's malloc that was a quarter of its cost. Measured on the
/// benchmark review (engine `examples/hot_path`, 40,000 answers, one pinned core): 0.77x the
/// time of the system allocator. Builds without the `mimalloc` feature use the system allocator,
/// for heap profilers.
///
/// It is mimalloc 2.x (the crate's `v2` feature), not the 3.x the crate builds by default. With
/// 3.x the large cluster benchmark held 47.9 and 46.6 MiB once ready, against 38.1 and 38.2 MiB
/// with 2.x in the same alternating sitting (2026-12-07), and the answer took the same
/// instructions. A likely reason, read in 3.x's `alloc-aligned.c` and not proven: Rust asks for
/// every allocation with its alignment, and 3.x serves an aligned request whose size is not a
/// power of two from a larger size class (its over-allocation path) whenever the free list of its
/// own class is empty. The answer's profile shows that path on 17 of its 205 allocations, on
/// every answer, not only the first.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    small_pages_only();
    // One crypto provider for the whole process (the webhook's rustls, and the Kubernetes
    // client's). Installing fails only if one is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = hostguard::cli::Cli::parse();
    hostguard::cli::run(cli)
}

/// Turns transparent huge pages off for this process.
///
/// mimalloc asks for huge pages (`madvise(MADV_HUGEPAGE)`) on the arenas it reserves, so on a
/// node whose THP setting is `madvise` (or `always`) every 2 MiB region it touches is backed
/// whole. Measured with `serve --standalone`: with the default policy 9.0 MiB of anonymous memory,
/// 8 MiB of it huge pages, against 1.5 MiB with small pages; with 1,000 policies and 10,000
/// AIWorkloads a peak RSS of 43.0 MiB against 31.6 MiB. That difference counts against the Pod's
/// memory limit and buys nothing for a heap this small (the benchmark answer took the same time
/// either way). mimalloc is built without its `madvise` (the `no_thp` feature), which covers the
/// `madvise` setting from the first allocation; this call, the kernel's own switch
/// (`PR_SET_THP_DISABLE`, Linux 3.15), covers `always` for everything allocated after it. Where
/// it is refused, the process runs as before.
fn small_pages_only() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}
