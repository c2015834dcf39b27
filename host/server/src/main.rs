//! The `wasmail` binary. Exit codes: 0 success, 1 runtime error (printed as
//! `wasmail: error: ...` with its causes), 2 usage error (reported by clap).

mod cli;

use std::error::Error;
use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::Parser as _;
use wasmail::config::Config;

use crate::cli::{Cli, Command, ConfigCommand, GlobalOptions, ImportCommand, PluginCommand};

type RunError = Box<dyn Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasmail: error: {}", with_causes(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), RunError> {
    match cli.command {
        Command::Config(ConfigCommand::Example) => write_stdout(Config::example()),
        Command::Config(ConfigCommand::Check) => {
            let config = load_config(&cli.global)?;
            for warning in config.warnings() {
                eprintln!("wasmail: warning: {warning}");
            }
            write_stdout("ok\n")
        }
        Command::Import(ImportCommand::Maildir {
            path,
            account,
            no_progress,
        }) => {
            let config = load_config(&cli.global)?;
            wasmail::logging::init(config.log.format, &config.log.level)?;
            wasmail::import::import_maildir(&config, &path, &account, !no_progress)?;
            Ok(())
        }
        Command::Plugin(PluginCommand::Check { file }) => {
            let wasm =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let engine = wasmail_plugin::PluginEngine::new(wasmail_plugin::EngineOptions {
                pooling: false,
                ..Default::default()
            })?;
            let found = wasmail_plugin::inspect(&engine, &wasm)?;
            let grants = if found.imports.is_empty() {
                "none".to_owned()
            } else {
                found.imports.join(", ")
            };
            write_stdout(&format!(
                "{}: a wasmail plugin\nexports: {}\nneeds grants: {grants}\nWASI imports (sandboxed): {}\n",
                file.display(),
                found.exports.join(", "),
                found.wasi_imports.len()
            ))
        }
    }
}

/// The configuration every subcommand works with: the file (or the embedded defaults), then the
/// command-line overrides, validated together.
fn load_config(global: &GlobalOptions) -> Result<Config, RunError> {
    let mut config = Config::load(global.config.as_deref())?;
    if let Some(data_dir) = &global.data_dir {
        config.server.data_dir.clone_from(data_dir);
        config.validate()?;
    }
    Ok(config)
}

/// Writes command output; a reader that went away (`wasmail config example | head`) is not an
/// error.
fn write_stdout(text: &str) -> Result<(), RunError> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(format!("cannot write to standard output: {error}").into()),
        Ok(()) => Ok(()),
    }
}

/// `error: cause: cause ...`, the way the message reads best on one line.
fn with_causes(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
