//! # filter-ratelimit: recipients per client or account per time window
//!
//! Counts recipients at the RCPT stage, each `RCPT TO` one, in the plugin's `kv` namespace with
//! `kv.increment`: a counter starts at the first recipient and expires `window` seconds later
//! (a fixed window; the next recipient after that starts a new one). A recipient that takes the
//! count over `limit` is deferred with `451 4.7.0 Rate limit exceeded, try again later`, and so is
//! every further one until the window ends; the sender retries later.
//!
//! ## Configuration
//!
//! ```toml
//! [[plugins]]
//! name = "ratelimit"
//! file = "filter_ratelimit.wasm"
//! grants = { kv = true, log = true }
//!
//! [plugins.config]
//! per_client = { limit = 100, window = 3600 }     # the defaults: 100 recipients an hour
//! per_account = { limit = 500, window = 86400 }   # the defaults: 500 recipients a day
//! ```
//!
//! - **`per_client`** counts recipients from unauthenticated clients per client IP address (an
//!   IPv6 client per /64, which is what one host can easily get; an IPv4-mapped IPv6 address as
//!   IPv4). kv key `client:<address>`.
//! - **`per_account`** counts recipients from authenticated clients (SMTP AUTH;
//!   `envelope.client.account` set) per account, whatever address they come from: an
//!   authenticated session counts against its account's limit **instead of** its address's,
//!   so users behind one NAT do not share a limit. kv key `account:<account, lowercase>`.
//! - `limit` is the number of recipients allowed per window (`limit = 0` turns that counter
//!   off); `window` is in seconds (at least 1). Either key may be left out to keep its default.
//! - Each plugin entry has its own kv namespace: two entries of this plugin under different
//!   names count separately. Keys longer than kv's 256 octets are stored under a 128-bit hash.
//! - **Passing** is `continue`, not `accept`: later filters and the delivery policy still decide.
//! - **Failures**: when `kv` fails (quota full, storage error) the recipient passes (the limit
//!   fails open, never losing mail) and a warning is logged.
//! - **Bad settings** (a value that is not a whole number in range, a `per_*` that is not a
//!   table, an unknown key) are logged at `warn` and the default is used. Logging needs the `log`
//!   grant (on by default in the server).

use std::net::IpAddr;
use std::sync::OnceLock;

use toml::{Table, Value};
use wasmail_plugin_sdk::{Decision, Envelope, RcptHook, config, kv, log};

/// kv's longest key.

#[derive(Clone, Copy, Debug)]
struct Limit {
    /// Recipients per window; 0: not counted.
    limit: i64,
    /// Seconds.
    window: u64,
}

#[derive(Debug)]
struct Settings {
    per_client: Limit,
    per_account: Limit,
}

const PER_CLIENT: Limit = Limit {
    limit: 100,
    window: 3600,
};
const PER_ACCOUNT: Limit = Limit {
    limit: 500,
    window: 86400,
};

/// The settings, read once per instance (that is, per SMTP transaction).
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(load_settings)
}

fn load_settings() -> Settings {
    let mut s = Settings {
        per_client: PER_CLIENT,
        per_account: PER_ACCOUNT,
    };
    let table: Table = match config::all().parse() {
        Ok(t) => t,
        Err(e) => {
            log::warn(&format!("config is not a TOML table, using defaults: {e}"));
            return s;
        }
    };
    for (key, value) in &table {
        match key.as_str() {
            "per_client" => s.per_client = limit(key, value, PER_CLIENT),
            "per_account" => s.per_account = limit(key, value, PER_ACCOUNT),
            other => log::warn(&format!("unknown setting {other:?} ignored")),
        }
    }
    s
}

/// `{ limit = N, window = SECONDS }`, each key defaulting on its own.
fn limit(name: &str, value: &Value, default: Limit) -> Limit {
    let Some(t) = value.as_table() else {
        log::warn(&format!(
            "`{name}` must be a table {{ limit = N, window = SECONDS }}; using the defaults"
        ));
        return default;
    };
    let mut out = default;
    for (key, v) in t {
        let number = |min: i64, default: i64| match v.as_integer() {
            Some(n) if n >= min => n,
            _ => {
                log::warn(&format!(
                    "`{name}.{key}` must be a whole number of at least {min}; using {default}"
                ));
                default
            }
        };
        match key.as_str() {
            "limit" => out.limit = number(0, default.limit),
            "window" => {
                let d = i64::try_from(default.window).unwrap_or(i64::MAX);
                out.window = number(1, d).unsigned_abs();
            }
            other => log::warn(&format!("unknown key {other:?} in `{name}` ignored")),
        }
    }
    out
}

/// The client an unauthenticated count is kept for: the address, an IPv6 address's /64.
fn client_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_lowercase(),
    }
}

struct RateLimit;

impl RcptHook for RateLimit {
    fn on_rcpt(envelope: Envelope, _recipient: String) -> Decision {
        let s = settings();
        let (counter, limit) = match &envelope.client.account {
            Some(account) => (
                kv::bounded_key("account", &account.to_lowercase()),
                s.per_account,
            ),
            None => (
                kv::bounded_key("client", &client_key(&envelope.client.address)),
                s.per_client,
            ),
        };
        if limit.limit == 0 {
            return Decision::cont();
        }
        match kv::increment(&counter, 1, Some(limit.window)) {
            Ok(count) if count > limit.limit => {
                Decision::defer(451, "4.7.0", "Rate limit exceeded, try again later")
            }
            Ok(_) => Decision::cont(),
            Err(e) => {
                log::warn(&format!(
                    "kv could not count {counter:?}, letting it pass: {e:?}"
                ));
                Decision::cont()
            }
        }
    }
}

wasmail_plugin_sdk::export!(RateLimit: RcptHook);
