//! The `wasmail` command line: what an operator can type, and nothing that it does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// wasmail: a mail server (SMTP, IMAP, POP3) with WebAssembly policy plugins.
#[derive(Debug, Parser)]
#[command(name = "wasmail", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Accepted by every subcommand, before or after its name, so that `user`, `plugin` and `import`
/// can be pointed at the same config and data dir as a running `serve`.
#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// Configuration file (TOML); without it the embedded defaults are used
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory; overrides `server.data_dir` from the configuration
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: SMTP (inbound, submission, submissions) on the configured listeners
    ///
    /// With no config it runs on the embedded defaults: loopback only, ports 3025/3587/3465,
    /// data in ./wasmail-data, domain localhost, a self-signed certificate made on first start.
    /// SIGTERM or ctrl-c stops it gracefully; SIGHUP reloads the plugins.
    Serve,
    /// Print or check the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Import existing mail into an account
    #[command(subcommand)]
    Import(ImportCommand),
    /// Inspect WebAssembly plugins
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage the accounts of the default authenticator
    ///
    /// The accounts and their argon2id password hashes are kept in `<data dir>/auth/users`,
    /// which the default authenticator plugin reads at every login: changes apply to the next
    /// login, also while the server runs.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account with a password; exits 1 if it exists
    Add {
        /// The account's address (user@domain), also its login name
        address: String,
        /// Read the password from the first line of standard input instead of asking twice on
        /// the terminal
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts, one address per line (disabled ones marked)
    List,
    /// Remove an account (its mail stays in the store); exits 1 if it does not exist
    Remove {
        /// The account's address
        address: String,
    },
    /// Change an account's password; exits 1 if it does not exist
    Passwd {
        /// The account's address
        address: String,
        /// Read the password from the first line of standard input instead of asking twice on
        /// the terminal
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Say which wasmail interfaces a component exports and which host imports it needs (the
    /// grants to give it), or exactly why it is not a wasmail plugin; exits 1 if it is not
    Check {
        /// The component file (.wasm)
        file: PathBuf,
    },
    /// Ask the running server (of this data dir) to reload its plugins; prints the new
    /// generation, or why the reload failed (the old plugins then keep serving) and exits 1
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a complete, commented config file with every key at its default
    Example,
    /// Load and validate the configuration; print "ok", or what is wrong and exit with 1
    Check,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a Maildir and its subfolders (Maildir++ or nested), keeping flags and order;
    /// running it again skips what is already there
    Maildir {
        /// The Maildir to read (the directory that holds cur/, new/ and tmp/)
        path: PathBuf,
        /// The account that receives the messages
        #[arg(long, value_name = "ADDRESS")]
        account: String,
        /// Do not draw a progress bar
        #[arg(long)]
        no_progress: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "wasmail",
            "config",
            "check",
            "--config",
            "a.toml",
            "--data-dir",
            "/srv/mail",
        ])?;
        assert_eq!(cli.global.config, Some(PathBuf::from("a.toml")));
        assert_eq!(cli.global.data_dir, Some(PathBuf::from("/srv/mail")));
        assert!(matches!(cli.command, Command::Config(ConfigCommand::Check)));

        let cli = Cli::try_parse_from(["wasmail", "--config", "b.toml", "config", "example"])?;
        assert_eq!(cli.global.config, Some(PathBuf::from("b.toml")));

        let cli = Cli::try_parse_from([
            "wasmail",
            "user",
            "add",
            "a@example.org",
            "--password-stdin",
            "--data-dir",
            "/srv/mail",
        ])?;
        assert_eq!(cli.global.data_dir, Some(PathBuf::from("/srv/mail")));
        assert!(matches!(
            cli.command,
            Command::User(UserCommand::Add {
                password_stdin: true,
                ..
            })
        ));
        Ok(())
    }
}
