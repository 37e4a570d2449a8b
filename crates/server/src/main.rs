//! The `chatd` binary: parse configuration, start logging, serve until SIGTERM or Ctrl-C
//! (or rebuild the search index with `chatd reindex`, import the old system's data with
//! `chatd import`, or print the OpenAPI document with `chatd openapi`).

use chatd_server::config::Command;
use chatd_server::{Application, Cli, import, openapi, reindex, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; variables already set win over it.
    let _ = dotenvy::dotenv();
    let config = match Cli::parse().into_command() {
        Command::Serve(config) => config,
        Command::Reindex(args) => {
            telemetry::init("info");
            return tokio::task::spawn_blocking(move || reindex::run(&args)).await?;
        }
        Command::Openapi => {
            print!("{}", openapi::json());
            return Ok(());
        }
        Command::Import(args) => {
            telemetry::init(&args.log);
            if let Err(e) = import::run(&args).await {
                // One line, naming what is wrong; the exit code says it failed.
                eprintln!("chatd import: {e}");
                std::process::exit(1);
            }
            return Ok(());
        }
    };
    telemetry::init(&config.log);
    // Before the "listening" line, so that a signal right after it still stops chatd cleanly.
    let shutdown = telemetry::shutdown_signal()?;
    let app = Application::build(config).await?;
    let creation = app.creation_addr().map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(api = %app.api_addr(), creation = %creation, "listening");
    app.run_until(shutdown).await
}
