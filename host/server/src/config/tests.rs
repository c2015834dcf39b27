use std::collections::BTreeSet;
use std::io::Write as _;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Some(Path::new("test.toml")))
}

fn parse_error_of(text: &str) -> ParseError {
    match parse(text) {
        Err(ConfigError::Parse(error)) => *error,
        other => panic!("expected a parse error for {text:?}, got {other:?}"),
    }
}

fn findings_of(config: &Config) -> Vec<Finding> {
    match config.validate() {
        Err(ConfigError::Invalid { findings, .. }) => findings,
        other => panic!("expected validation findings, got {other:?}"),
    }
}

/// A config in which every optional value is present and every list has an element. Struct
/// literals without `..` make adding a field a compile error here, which leads to the example
/// file through `example_documents_every_key`.
fn fully_populated() -> Config {
    let service = |port| Service {
        enabled: true,
        listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
    };
    let mut plugin_config = toml::Table::new();
    plugin_config.insert("threshold".to_owned(), toml::Value::Integer(5));
    Config {
        server: ServerConfig {
            hostname: "mx.example.org".to_owned(),
            data_dir: PathBuf::from("/var/lib/wasmail"),
            domains: vec!["example.org".to_owned()],
        },
        services: Services {
            smtp: service(25),
            submission: service(587),
            submissions: service(465),
            imap: service(143),
            imaps: service(993),
            pop3: service(110),
            pop3s: service(995),
        },
        tls: TlsConfig {
            cert: Some(PathBuf::from("/etc/wasmail/cert.pem")),
            key: Some(PathBuf::from("/etc/wasmail/key.pem")),
            allow_plaintext_auth: false,
            sni: vec![SniCertificate {
                name: "*.example.org".to_owned(),
                cert: PathBuf::from("/etc/wasmail/wild.pem"),
                key: PathBuf::from("/etc/wasmail/wild.key"),
            }],
        },
        limits: Limits {
            max_message_size: ByteSize::mib(25),
            max_connections: 10,
            max_connections_per_ip: 2,
            max_recipients: 100,
            max_line_length: ByteSize::kib(4),
            smtp_idle_timeout: TimeSpan::from_mins(10),
            imap_idle_timeout: TimeSpan::from_mins(31),
            pop3_idle_timeout: TimeSpan::from_mins(11),
            shutdown_grace: TimeSpan::from_millis(1500),
        },
        store: StoreConfig { fsync: true },
        log: LogConfig {
            format: LogFormat::Json,
            level: "info,wasmail=debug".to_owned(),
        },
        dns: DnsConfig {
            servers: vec![SocketAddr::from(([192, 0, 2, 53], 53))],
            timeout: TimeSpan::from_millis(1500),
        },
        pop3: Pop3Config {
            expire: Pop3Expire::Days(30),
            login_delay: TimeSpan::from_secs(60),
            accounts: [(
                "kiosk@example.org".to_owned(),
                Pop3AccountPolicy {
                    expire: Some(Pop3Expire::Days(0)),
                    login_delay: Some(TimeSpan::from_mins(15)),
                },
            )]
            .into(),
        },
        auth: AuthConfig {
            cache_ttl: TimeSpan::from_secs(30),
        },
        plugins: vec![PluginConfig {
            name: "spam-rules".to_owned(),
            file: PathBuf::from("/usr/lib/wasmail/spam-rules.wasm"),
            on_error: OnError::Reject,
            memory: ByteSize::mib(32),
            timeout: TimeSpan::from_millis(250),
            grants: Grants {
                log: true,
                config: true,
                kv: true,
                clock: true,
                dns: true,
                read_dirs: vec![PathBuf::from("/usr/share/wasmail")],
            },
            config: plugin_config,
        }],
    }
}

/// Turns the example's commented-out settings (`# key = value`, `# [table]`, `# [[table]]`) into
/// live ones and leaves prose comments alone.
fn uncomment(example: &str) -> String {
    let mut out = String::new();
    for line in example.lines() {
        let body = line.strip_prefix("# ").unwrap_or("");
        let is_header = {
            let inner = body.trim_start_matches('[').trim_end_matches(']');
            body.starts_with('[')
                && body.ends_with(']')
                && !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        };
        let is_assignment = body.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        out.push_str(if is_header || is_assignment {
            body
        } else {
            line
        });
        out.push('\n');
    }
    out
}

/// Dotted paths of every key in `table`; arrays of tables contribute the union of their
/// elements' keys. The plugin's own `config` table is free-form, so only its name counts.
fn key_paths(table: &toml::Table, prefix: &str, paths: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        paths.insert(path.clone());
        if path == "plugins.config" {
            continue;
        }
        match value {
            toml::Value::Table(inner) => key_paths(inner, &path, paths),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        key_paths(inner, &path, paths);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn no_file_and_an_empty_file_give_the_defaults() -> TestResult {
    assert_eq!(Config::load(None)?, Config::default());
    assert_eq!(parse("")?, Config::default());
    assert_eq!(parse("# only a comment\n\n")?, Config::default());
    Ok(())
}

#[test]
fn defaults_follow_the_contract() {
    let config = Config::default();
    assert_eq!(config.server.hostname, "localhost");
    assert_eq!(config.server.data_dir, PathBuf::from("./wasmail-data"));
    assert_eq!(config.server.domains, ["localhost"]);
    let ports: Vec<(&str, Vec<String>)> = config
        .services
        .all()
        .iter()
        .map(|(name, service)| {
            assert!(service.enabled, "{name}");
            (
                *name,
                service.listen.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("smtp", vec!["127.0.0.1:3025".to_owned()]),
            ("submission", vec!["127.0.0.1:3587".to_owned()]),
            ("submissions", vec!["127.0.0.1:3465".to_owned()]),
            ("imap", vec!["127.0.0.1:3143".to_owned()]),
            ("imaps", vec!["127.0.0.1:3993".to_owned()]),
            ("pop3", vec!["127.0.0.1:3110".to_owned()]),
            ("pop3s", vec!["127.0.0.1:3995".to_owned()]),
        ]
    );
    assert!(config.store.fsync);
    assert!(!config.tls.allow_plaintext_auth);
    assert!(config.plugins.is_empty());
}

#[test]
fn defaults_are_valid_and_draw_no_warnings() -> TestResult {
    Config::default().validate()?;
    assert_eq!(Config::default().warnings(), []);
    Ok(())
}

#[test]
fn example_parses_to_exactly_the_defaults() -> TestResult {
    assert_eq!(Config::parse(Config::example(), None)?, Config::default());
    Ok(())
}

#[test]
fn example_with_its_commented_settings_switched_on_is_valid() -> TestResult {
    let live = uncomment(Config::example());
    let config = Config::parse(&live, None)?;
    assert!(config.tls.cert.is_some() && config.tls.key.is_some());
    assert_eq!(config.tls.sni.len(), 1);
    assert_eq!(config.plugins.len(), 1);
    assert_eq!(
        config.plugins[0].config.get("threshold"),
        Some(&toml::Value::Integer(5))
    );
    Ok(())
}

#[test]
fn example_documents_every_key() -> TestResult {
    let mut schema = BTreeSet::new();
    key_paths(&toml::Table::try_from(fully_populated())?, "", &mut schema);
    let mut documented = BTreeSet::new();
    key_paths(
        &toml::from_str(&uncomment(Config::example()))?,
        "",
        &mut documented,
    );
    let missing: Vec<&String> = schema.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys missing from example.toml: {missing:?}"
    );
    // The other direction holds because the uncommented example parses with
    // deny_unknown_fields (see the test above).
    Ok(())
}

#[test]
fn a_fully_populated_config_survives_serialization() -> TestResult {
    let config = fully_populated();
    config.validate()?;
    let text = toml::to_string(&config)?;
    assert_eq!(parse(&text)?, config);
    Ok(())
}

#[test]
fn unknown_keys_are_rejected_with_key_line_and_file() {
    let cases: &[(&str, &str, (usize, usize))] = &[
        ("hostname = \"x\"\n", "`hostname`", (1, 1)),
        (
            "[server]\nhostname = \"a\"\nhost_name = \"b\"\n",
            "`host_name`",
            (3, 1),
        ),
        (
            "[services.smtp]\nlisten = []\n  enable = false\n",
            "`enable`",
            (3, 3),
        ),
        ("[services.smpt]\n", "`smpt`", (1, 11)),
        ("[limits]\nmax_msg_size = 1\n", "`max_msg_size`", (2, 1)),
        (
            "[[plugins]]\nname = \"a\"\nfile = \"a.wasm\"\n[plugins.grants]\nnet = true\n",
            "`net`",
            (5, 1),
        ),
        (
            "[[tls.sni]]\nname = \"a\"\ncert = \"c\"\nkey = \"k\"\nchain = \"x\"\n",
            "`chain`",
            (5, 1),
        ),
    ];
    for &(text, key, position) in cases {
        let error = parse_error_of(text);
        assert_eq!(error.position, Some(position), "{text:?}: {error}");
        let shown = error.to_string();
        assert!(shown.contains("unknown field"), "{shown}");
        assert!(shown.contains(key), "{shown}");
        let (line, column) = position;
        assert!(
            shown.starts_with(&format!("test.toml, line {line}, column {column}: ")),
            "{shown}"
        );
    }
}

#[test]
fn parse_errors_underline_the_offending_text() {
    let error = parse_error_of("[log]\nformat = \"human\"\nlevle = \"debug\"\n");
    assert_eq!(
        error.to_string(),
        "test.toml, line 3, column 1: unknown field `levle`, expected `format` or `level`\n  |\n3 | levle = \"debug\"\n  | ^^^^^"
    );
}

#[test]
fn values_of_the_wrong_form_are_located_and_explained() {
    let cases: &[(&str, &str, usize)] = &[
        (
            "[services.imap]\nlisten = [\"localhost:143\"]\n",
            "invalid listen address \"localhost:143\"",
            2,
        ),
        (
            "[services.imap]\nlisten = \"0.0.0.0:143\"\n",
            "invalid type",
            2,
        ),
        (
            "[limits]\nmax_message_size = \"5 parsecs\"\n",
            "unknown size unit \"parsecs\"",
            2,
        ),
        (
            "[limits]\nsmtp_idle_timeout = \"-5m\"\n",
            "cannot be negative",
            2,
        ),
        ("[limits]\nmax_connections = -1\n", "invalid value", 2),
        ("[log]\nformat = \"xml\"\n", "unknown variant `xml`", 2),
        (
            "[[plugins]]\nname = \"a\"\non_error = \"retry\"\nfile = \"a.wasm\"\n",
            "unknown variant `retry`",
            3,
        ),
        ("[[plugins]]\nname = \"a\"\n", "missing field `file`", 1),
        ("[server\n", "", 1),
    ];
    for &(text, expected, line) in cases {
        let error = parse_error_of(text);
        let shown = error.to_string();
        assert!(shown.contains(expected), "{text:?}: {shown}");
        assert_eq!(
            error.position.map(|(l, _)| l),
            Some(line),
            "{text:?}: {shown}"
        );
    }
}

#[test]
fn a_partial_service_table_keeps_that_services_defaults() -> TestResult {
    let config = parse(
        "[services.pop3]\nenabled = false\n[services.imap]\nlisten = [\"0.0.0.0:143\", \"[::]:143\"]\n",
    )?;
    let defaults = Services::default();
    assert!(!config.services.pop3.enabled);
    assert_eq!(config.services.pop3.listen, defaults.pop3.listen);
    assert!(config.services.imap.enabled);
    assert_eq!(config.services.imap.listen.len(), 2);
    assert_eq!(config.services.smtp, defaults.smtp);
    Ok(())
}

#[test]
fn plugins_take_defaults_for_everything_but_name_and_file() -> TestResult {
    let config = parse("[[plugins]]\nname = \"a\"\nfile = \"a.wasm\"\n")?;
    assert_eq!(config.plugins, [PluginConfig::new("a", "a.wasm")]);
    let plugin = &config.plugins[0];
    assert_eq!(plugin.on_error, OnError::Defer);
    assert_eq!(plugin.memory, ByteSize::mib(64));
    assert_eq!(plugin.timeout, TimeSpan::from_millis(100));
    assert!(plugin.grants.log && !plugin.grants.kv && !plugin.grants.clock && !plugin.grants.dns);
    Ok(())
}

#[test]
fn plugin_grants_may_be_an_inline_table() -> TestResult {
    let config = parse(
        "[[plugins]]\nname = \"a\"\nfile = \"a.wasm\"\ngrants = { kv = true, read_dirs = [\"/srv\"] }\nconfig = { mode = \"strict\" }\n",
    )?;
    let plugin = &config.plugins[0];
    assert!(plugin.grants.kv && plugin.grants.log);
    assert_eq!(plugin.grants.read_dirs, [PathBuf::from("/srv")]);
    assert_eq!(
        plugin.config.get("mode"),
        Some(&toml::Value::String("strict".to_owned()))
    );
    Ok(())
}

#[test]
fn validation_names_each_offending_key() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nhostname = \"\"\n", "server.hostname: is empty"),
        (
            "[server]\nhostname = \"mail_host\"\n",
            "server.hostname: \"mail_host\" is not a valid host name",
        ),
        ("[server]\ndata_dir = \"\"\n", "server.data_dir: is empty"),
        ("[server]\ndomains = []\n", "server.domains: is empty"),
        (
            "[server]\ndomains = [\"example.org\", \"bad..org\"]\n",
            "server.domains[1]: \"bad..org\" is not a valid host name",
        ),
        (
            "[server]\ndomains = [\"exämple.org\"]\n",
            "server.domains[0]: \"exämple.org\" is not ASCII",
        ),
        (
            "[server]\ndomains = [\"a.org\", \"A.org\"]\n",
            "server.domains[1]: \"A.org\" is listed twice",
        ),
        (
            "[services.imap]\nlisten = []\n",
            "services.imap.listen: is empty while the service is enabled",
        ),
        (
            "[services.submission]\nlisten = [\"127.0.0.1:3025\"]\n",
            "services.submission.listen: 127.0.0.1:3025 overlaps 127.0.0.1:3025 in services.smtp.listen",
        ),
        (
            "[services.smtp]\nlisten = [\"0.0.0.0:25\"]\n[services.submission]\nlisten = [\"10.0.0.1:25\"]\n",
            "services.submission.listen: 10.0.0.1:25 overlaps 0.0.0.0:25 in services.smtp.listen",
        ),
        (
            "[tls]\ncert = \"c.pem\"\n",
            "tls.key: is missing: tls.cert is set",
        ),
        (
            "[tls]\nkey = \"k.pem\"\n",
            "tls.cert: is missing: tls.key is set",
        ),
        (
            "[[tls.sni]]\nname = \"*.*.org\"\ncert = \"c\"\nkey = \"k\"\n",
            "tls.sni[0].name",
        ),
        (
            "[limits]\nmax_message_size = 0\n",
            "limits.max_message_size: must be greater than zero",
        ),
        (
            "[limits]\nmax_connections = 0\n",
            "limits.max_connections: must be greater than zero",
        ),
        (
            "[limits]\nimap_idle_timeout = \"0s\"\n",
            "limits.imap_idle_timeout: must be greater than zero",
        ),
        (
            "[log]\nlevel = \"info,=[\"\n",
            "log.level: \"info,=[\" is not a tracing filter directive",
        ),
        (
            "[[plugins]]\nname = \"a b\"\nfile = \"a.wasm\"\n",
            "plugins[0].name: \"a b\" must be 1-64 ASCII letters",
        ),
        (
            "[[plugins]]\nname = \"a\"\nfile = \"\"\n",
            "plugins[0].file: is empty",
        ),
        (
            "[[plugins]]\nname = \"a\"\nfile = \"a.wasm\"\nmemory = \"4 KiB\"\n",
            "plugins[0].memory: 4 KiB is less than one WebAssembly page",
        ),
        (
            "[[plugins]]\nname = \"a\"\nfile = \"a.wasm\"\ntimeout = 0\n",
            "plugins[0].timeout: must be greater than zero",
        ),
        (
            "[[plugins]]\nname = \"a\"\nfile = \"a.wasm\"\n[[plugins]]\nname = \"b\"\nfile = \"b.wasm\"\n[[plugins]]\nname = \"a\"\nfile = \"c.wasm\"\n",
            "plugins[2].name: \"a\" is already the name of plugins[0]",
        ),
    ];
    for &(text, expected) in cases {
        match parse(text) {
            Err(error @ ConfigError::Invalid { .. }) => {
                let shown = error.to_string();
                assert!(
                    shown.starts_with(&format!("test.toml: {expected}")),
                    "{text:?}: {shown}"
                );
            }
            other => panic!("{text:?}: expected a validation error, got {other:?}"),
        }
    }
}

#[test]
fn validation_reports_every_problem_at_once() {
    let mut config = Config::default();
    config.server.hostname.clear();
    config.limits.max_recipients = 0;
    let findings = findings_of(&config);
    let keys: Vec<&str> = findings.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["server.hostname", "limits.max_recipients"]);
    let shown = ConfigError::Invalid {
        path: None,
        findings,
    }
    .to_string();
    assert_eq!(
        shown,
        "config: 2 problems:\n  server.hostname: is empty\n  limits.max_recipients: must be greater than zero"
    );
}

#[test]
fn listeners_that_cannot_clash_are_accepted() -> TestResult {
    // IPv4 and IPv6 wildcards on one port, port 0 twice, a disabled service on a taken port.
    parse(concat!(
        "[services.smtp]\nlisten = [\"0.0.0.0:25\", \"[::]:25\"]\n",
        "[services.submission]\nlisten = [\"127.0.0.1:0\"]\n",
        "[services.submissions]\nlisten = [\"127.0.0.1:0\"]\n",
        "[services.imap]\nenabled = false\nlisten = [\"127.0.0.1:25\"]\n",
    ))?;
    Ok(())
}

#[test]
fn risky_but_working_settings_draw_warnings() -> TestResult {
    let config = parse(concat!(
        "[limits]\nmax_message_size = \"1 KiB\"\nmax_recipients = 10\nmax_line_length = 500\n",
        "smtp_idle_timeout = \"1m\"\nimap_idle_timeout = \"1m\"\npop3_idle_timeout = \"1m\"\n",
        "[store]\nfsync = false\n[tls]\nallow_plaintext_auth = true\n",
    ))?;
    let keys: Vec<String> = config.warnings().into_iter().map(|w| w.key).collect();
    assert_eq!(
        keys,
        [
            "limits.max_message_size",
            "limits.max_recipients",
            "limits.max_line_length",
            "limits.smtp_idle_timeout",
            "limits.imap_idle_timeout",
            "limits.pop3_idle_timeout",
            "store.fsync",
            "tls.allow_plaintext_auth",
        ]
    );
    Ok(())
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() -> TestResult {
    let mut file = tempfile::NamedTempFile::new()?;
    writeln!(file, "[server]\nhostname = \"mx.example.org\"")?;
    let config = Config::load(Some(file.path()))?;
    assert_eq!(config.server.hostname, "mx.example.org");

    let mut bad = tempfile::NamedTempFile::new()?;
    write!(bad, "[store]\nfsync = true\nfsynk = false\n")?;
    let shown = Config::load(Some(bad.path()))
        .map(drop)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let expected = format!(
        "{}, line 3, column 1: unknown field `fsynk`",
        bad.path().display()
    );
    assert!(shown.starts_with(&expected), "{shown}");
    Ok(())
}

#[test]
fn load_reports_a_missing_file() {
    let path = Path::new("/nonexistent/wasmail.toml");
    match Config::load(Some(path)) {
        Err(error @ ConfigError::Read { .. }) => {
            assert_eq!(
                error.to_string(),
                "cannot read config file /nonexistent/wasmail.toml"
            );
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn excerpts_count_columns_in_characters_and_drop_carriage_returns() {
    let error = parse_error_of("[server]\r\nhostname = \"h\"\r\ndomains = [\"ä.org\", 5]\r\n");
    assert_eq!(error.position, Some((3, 21)), "{error}");
    assert!(
        error
            .excerpt
            .ends_with("3 | domains = [\"ä.org\", 5]\n  |                     ^"),
        "{}",
        error.excerpt
    );
}

#[test]
fn pop3_account_exceptions_override_the_defaults() -> TestResult {
    let config = parse(concat!(
        "[pop3]\nexpire = 7\nlogin_delay = \"1m\"\n",
        "[pop3.accounts.\"Kiosk@Example.org\"]\nexpire = \"never\"\n",
    ))?;
    assert_eq!(
        config.pop3.for_account("kiosk@example.org"),
        (Pop3Expire::Never, TimeSpan::from_mins(1))
    );
    assert_eq!(
        config.pop3.for_account("other@example.org"),
        (Pop3Expire::Days(7), TimeSpan::from_mins(1))
    );
    assert!(parse("[pop3]\nexpire = \"sometimes\"\n").is_err());
    Ok(())
}
