//! The `resume-chat-worker` binary: parse the command line, run it, map errors to exit codes.
//! Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use resume_chat_worker::cli::{Cli, dispatch};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("resume-chat-worker: {e}");
            e.exit_code()
        }
    }
}
