//! Process-wide `tracing` output: one subscriber, writing to standard error so that standard
//! output stays free for command results (`wasmail config example > wasmail.toml`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `level` is not `EnvFilter` syntax (the config loader checks this earlier for `log.level`).
    #[error("invalid log level {level:?}: {reason}")]
    InvalidLevel { level: String, reason: String },
    /// A global subscriber exists already, e.g. set by an embedding program or a previous call.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
}

/// Installs the global subscriber: `format` chooses readable lines or JSON objects, `level` is a
/// `tracing_subscriber::EnvFilter` directive such as `"info"` or `"info,wasmail=debug"`.
pub fn init(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(level).map_err(|error| LoggingError::InvalidLevel {
        level: level.to_owned(),
        reason: error.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInitialized)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, because the subscriber is global to the test process.
    #[test]
    fn init_rejects_bad_levels_and_installs_once() {
        assert!(matches!(
            init(LogFormat::Human, "info,=["),
            Err(LoggingError::InvalidLevel { .. })
        ));
        assert!(init(LogFormat::Json, "debug").is_ok());
        assert!(matches!(
            init(LogFormat::Human, "info"),
            Err(LoggingError::AlreadyInitialized)
        ));
    }
}
