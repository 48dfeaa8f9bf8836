//! `keyward`: parse the command line, run it, turn any error into one line and a non-zero exit.

// The crate forbids unsafe code except for the single environment call below.
#![deny(unsafe_code)]

use clap::Parser;
use keyward_server::cli::{Cli, run};
use std::process::ExitCode;
use zeroize::Zeroizing;

/// mimalloc instead of glibc's malloc: it hands freed pages back to the system soon, so memory
/// taken by a burst of connections is returned once they close (`make soak`,
/// docs/RELIABILITY.md: RSS follows the open connections down as well as up).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Read the master key from the environment once, before any thread exists, and remove it so
    // that child processes, /proc/<pid>/environ readers and crash reporters never see it.
    let env_master_key = std::env::var("KEYWARD_MASTER_KEY").ok().map(Zeroizing::new);
    if env_master_key.is_some() {
        // SAFETY: no other thread exists yet (the async runtime is built below), so nothing can
        // read the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var("KEYWARD_MASTER_KEY");
        }
    }

    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyward: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, env_master_key)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: error: {e}");
            ExitCode::FAILURE
        }
    }
}
