//! The `handler` binary: parses arguments, sets up tracing, runs the chosen mode.

use clap::Parser;
use handler::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = match Cli::parse().command {
        Some(c) => c,
        None => Cli::parse_from(["handler", "local"])
            .command
            .expect("local was given"),
    };
    match command {
        Command::Local(args) => handler::local::run(args).await,
        Command::Functions(args) => handler::functions::run(args).await,
        Command::Submit(args) => handler::client::submit(args).await,
        Command::Tasks(args) => handler::client::tasks(args).await,
        Command::Pool(args) => handler::client::pool(args).await,
        Command::Check(args) => handler::check::main(args).await,
    }
}
