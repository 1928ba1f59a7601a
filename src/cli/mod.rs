//! The command line: `run` (the daemon, also the default), `healthcheck` (for the container's
//! health check, as distroless has no curl), and the operator commands `validate`, `enqueue` and
//! `dlq replay`. Each returns a [`CliError`] that `main` turns into a message and an exit code:
//! 2 for bad configuration or usage, 1 for everything else.

pub mod batch;
pub mod dlq;
pub mod enqueue;
pub mod healthcheck;
pub mod run;
pub mod validate;

use std::process::ExitCode;

use crate::config::{ConfigError, RawSettings};

/// resume-chat-worker: resumes Amazon Connect persistent chats from SQS jobs, within Connect's quotas.
///
/// Without a subcommand it runs the worker (same as `run`). Every setting is an environment
/// variable and a flag; see the README for the table.
#[derive(clap::Parser, Debug)]
#[command(
    name = "resume-chat-worker",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: RawSettings,
}

// Parsed once per process: the size of the `Run` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the worker: receive jobs, resume chats, publish results (the default).
    Run(RawSettings),
    /// Exit 0 when the worker on METRICS_ADDR answers /healthz with 200, else 1.
    Healthcheck {
        #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
        metrics_addr: String,
    },
    /// Check a JSON-lines file of jobs against the contract and explain each error.
    Validate {
        /// The file (one job per line); `-` or nothing reads stdin.
        file: Option<std::path::PathBuf>,
        /// Default instance id, as the worker would apply it.
        #[arg(long, env = "CONNECT_INSTANCE_ID")]
        connect_instance_id: Option<String>,
        /// Default contact flow id, as the worker would apply it.
        #[arg(long, env = "CONNECT_CONTACT_FLOW_ID")]
        connect_contact_flow_id: Option<String>,
    },
    /// Send jobs from a JSON-lines file or stdin to the jobs queue, after validating every line.
    Enqueue(enqueue::EnqueueArgs),
    /// Dead-letter queue tools: `dlq replay` moves messages back to the jobs queue.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

/// The standard AWS configuration (region, credentials, `AWS_ENDPOINT_URL_SQS` /
/// `AWS_ENDPOINT_URL_CONNECT`); a missing region is a configuration error (exit 2).
pub(crate) async fn aws_config() -> Result<aws_config::SdkConfig, CliError> {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    if shared.region().is_none() {
        return Err(ConfigError {
            setting: "AWS_REGION",
            problem: "is required (for example us-east-1)".to_owned(),
        }
        .into());
    }
    Ok(shared)
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        None => run::run(cli.settings).await,
        Some(Command::Run(settings)) => run::run(settings).await,
        Some(Command::Healthcheck { metrics_addr }) => healthcheck::check(&metrics_addr).await,
        Some(Command::Validate {
            file,
            connect_instance_id,
            connect_contact_flow_id,
        }) => {
            let defaults = crate::job::JobDefaults {
                instance_id: connect_instance_id,
                contact_flow_id: connect_contact_flow_id,
            };
            validate_command(file.as_deref(), &defaults)
        }
        Some(Command::Enqueue(args)) => enqueue::command(args).await,
        Some(Command::Dlq { command }) => dlq::command(command).await,
    }
}

/// `validate FILE`: prints the report with hints; exit 0 when every line is a valid job, 1 if not.
fn validate_command(
    file: Option<&std::path::Path>,
    defaults: &crate::job::JobDefaults,
) -> Result<ExitCode, CliError> {
    let report = match file {
        None => validate::validate_lines(std::io::stdin().lock(), defaults),
        Some(p) if p.as_os_str() == "-" => {
            validate::validate_lines(std::io::stdin().lock(), defaults)
        }
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| CliError::Failed(format!("cannot open {}: {e}", p.display())))?;
            validate::validate_lines(std::io::BufReader::new(f), defaults)
        }
    };
    println!("{}", report.render_with_hints());
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
