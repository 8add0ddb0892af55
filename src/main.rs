use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The proxy allocates and frees small buffers on every worker thread all
/// the time; mimalloc's thread-local free lists do that for a fraction of
/// glibc malloc's cost (see benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Everything the gateway writes (store, keys, socket) is for its owner only.
    unsafe {
        libc::umask(0o077);
    }
    let cli = gatehouse::cli::Cli::parse();
    let filter =
        EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GATEHOUSE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    gatehouse::cli::run(cli)
}
