//! The `wasmail` binary. Exit codes: 0 success, 1 runtime error (printed as
//! `wasmail: error: ...` with its causes), 2 usage error (reported by clap).

mod cli;

use std::error::Error;
use std::io::{self, BufRead as _, Read as _, Write as _};
use std::process::ExitCode;

use clap::Parser as _;
use wasmail::config::Config;
use wasmail::users::{self, UserError, UsersFile};
use wasmail_types::Secret;

use crate::cli::{
    Cli, Command, ConfigCommand, GlobalOptions, ImportCommand, PluginCommand, UserCommand,
};

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
        Command::Serve => {
            let config = load_config(&cli.global)?;
            wasmail::logging::init(config.log.format, &config.log.level)?;
            serve(config)
        }
        Command::Plugin(PluginCommand::Reload) => {
            let config = load_config(&cli.global)?;
            let reply = wasmail::control::request(&config.server.data_dir, "reload")?;
            match reply.strip_prefix("ok ") {
                Some(ok) => write_stdout(&format!("reloaded: {ok}\n")),
                None => Err(reply.into()),
            }
        }
        Command::User(command) => {
            let config = load_config(&cli.global)?;
            run_user(&config, command)
        }
    }
}

/// Tells a server running on this data dir to forget remembered logins, so an old password or a
/// removed account stops working at once. No server running: nothing to forget.
fn forget_logins(config: &Config) {
    let _ = wasmail::control::request(&config.server.data_dir, "flush-login-cache");
}

/// `wasmail serve`: runs until SIGTERM or ctrl-c; SIGHUP reloads the plugins.
fn serve(config: Config) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let data_dir = config.server.data_dir.clone();
        let server = wasmail::Server::builder(config).build()?;
        let handle = server.handle();
        let stop = tokio_util::sync::CancellationToken::new();
        let control = tokio::spawn(wasmail::control::serve(
            wasmail::control::socket_path(&data_dir),
            handle.clone(),
            stop.clone(),
        ));
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let reloader = tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading plugins");
                let h = handle.clone();
                let _ = tokio::task::spawn_blocking(move || h.reload_plugins()).await;
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
                _ = terminate.recv() => tracing::info!("SIGTERM"),
            }
        };
        let result = server.run(shutdown).await;
        stop.cancel();
        reloader.abort();
        let _ = control.await;
        result.map_err(RunError::from)
    })
}

/// `wasmail user ...`. Passwords are read before the users file is locked (hashing takes a
/// moment) and never printed.
fn run_user(config: &Config, command: UserCommand) -> Result<(), RunError> {
    let users = UsersFile::new(&config.server.data_dir);
    match command {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let address = users::canonical_address(&address)?;
            // Checked again under the lock; this spares typing a password for nothing.
            if let Some(listed) = users.find(&address)? {
                return Err(UserError::Exists {
                    address: listed,
                    path: users.path(),
                }
                .into());
            }
            let password = read_password(&address, password_stdin)?;
            let added = users.add(&address, &users::hash_password(&password)?)?;
            write_stdout(&format!("added {added}\n"))
        }
        UserCommand::List => {
            let listing = users.list()?;
            for line in listing.ignored_lines {
                eprintln!(
                    "wasmail: warning: {}, line {line}: not ADDRESS:HASH[:FLAGS]; ignored",
                    users.path().display()
                );
            }
            let mut out = String::new();
            for account in listing.accounts {
                out.push_str(&account.address);
                if account.disabled {
                    out.push_str(" (disabled)");
                }
                out.push('\n');
            }
            write_stdout(&out)
        }
        UserCommand::Remove { address } => {
            let address = users::canonical_address(&address)?;
            let removed = users.remove(&address)?;
            forget_logins(config);
            write_stdout(&format!("removed {removed}\n"))
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = users::canonical_address(&address)?;
            let Some(listed) = users.find(&address)? else {
                return Err(UserError::Unknown {
                    address,
                    path: users.path(),
                }
                .into());
            };
            let password = read_password(&listed, password_stdin)?;
            let changed = users.set_hash(&listed, &users::hash_password(&password)?)?;
            forget_logins(config);
            write_stdout(&format!("changed the password of {changed}\n"))
        }
    }
}

/// The new password: the first line of standard input (without its line end), or typed twice
/// on the terminal with echo off.
fn read_password(address: &str, from_stdin: bool) -> Result<Secret<String>, RunError> {
    let password = if from_stdin {
        let mut line = String::new();
        // One byte more than the longest password plus CRLF tells "too long" from "just fits".
        io::stdin()
            .lock()
            .take(users::MAX_PASSWORD_LEN as u64 + 3)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let text = text.strip_suffix('\r').unwrap_or(text);
        Secret::new(text.to_owned())
    } else {
        let first = ask(&format!("New password for {address}: "))?;
        users::check_password(&first)?;
        if ask("Retype the password: ")? != first {
            return Err(UserError::Mismatch.into());
        }
        first
    };
    users::check_password(&password)?;
    Ok(password)
}

/// One password typed on the terminal (`/dev/tty`) with echo off.
fn ask(prompt: &str) -> Result<Secret<String>, RunError> {
    rpassword::prompt_password(prompt)
        .map(Secret::new)
        .map_err(|e| {
            format!("cannot ask for the password on the terminal ({e}); use --password-stdin")
                .into()
        })
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
