//! # filter-greylist: triplet greylisting
//!
//! Classic greylisting (Harris, 2003) at the RCPT stage: the first time a (client network,
//! sender, recipient) triplet is seen, the recipient is deferred with
//! `451 4.7.1 Greylisted, please try again later`. A real mail server retries; most spamware
//! does not. A retry that comes at least `delay` after the first attempt, and within
//! `retry_window` of it, passes, and the triplet is then remembered as good for `lifetime`, so
//! later mail with the same triplet is not delayed again.
//!
//! ## Configuration
//!
//! ```toml
//! [[plugins]]
//! name = "greylist"
//! file = "filter_greylist.wasm"
//! grants = { kv = true, clock = true, log = true }
//!
//! [plugins.config]
//! delay = 300                 # seconds before a retry passes (default 300 = 5 minutes)
//! retry_window = 86400        # seconds after the first attempt within which a retry counts
//!                             # (default 86400 = 24 hours); later, the triplet starts over
//! lifetime = 3110400          # seconds a passed triplet stays good since it was last seen
//!                             # (default 3110400 = 36 days)
//! exempt_clients = ["192.0.2.*", "2001:db8::/32", "127.0.0.1"]   # never greylisted
//! ```
//!
//! - **Triplet**: the client's network (the /24 of an IPv4 address, the /64 of an IPv6 one, so
//!   a sender's pool of outgoing servers counts as one client; an IPv4-mapped IPv6 address counts
//!   as IPv4), the MAIL FROM address (the null sender `<>` as the empty string), and the
//!   recipient; addresses compare ignoring case.
//! - **Exempt**: authenticated clients (SMTP AUTH; `envelope.client.account` set) always pass,
//!   and so do clients whose IP address matches an `exempt_clients` entry: a glob (`*` any run of
//!   characters, `?` one character, e.g. `"192.0.2.*"`) or, with a `/`, a CIDR network (e.g.
//!   `"198.51.100.0/24"`, `"2001:db8::/32"`).
//! - **Passing** does not accept the recipient: the verdict is `continue`, so later filters and
//!   the delivery policy still decide.
//! - **State** lives in the plugin's `kv` namespace with TTLs, so it expires by itself: a
//!   first-seen entry (`g:<triplet>`, the time in milliseconds) for `retry_window`, a good-triplet
//!   entry (`w:<triplet>`) for `lifetime`, renewed every time the triplet passes. A triplet longer
//!   than kv's 256-octet keys is stored under a 128-bit hash of it. Time is the host's `clock`.
//! - **Failures**: when `kv` cannot store (its quota is full, the disk fails) the recipient
//!   passes (greylisting fails open, never losing mail) and a warning is logged.
//! - **Bad settings**: a value of the wrong type (or a negative number, or an exempt entry that
//!   is not a string) is logged at `warn` and its default used; an unknown key is logged and
//!   ignored. Logging needs the `log` grant (on by default in the server).

use std::net::IpAddr;
use std::sync::OnceLock;

use toml::{Table, Value};
use wasmail_plugin_sdk::matching::Glob;
use wasmail_plugin_sdk::{Decision, Envelope, RcptHook, clock, config, kv, log};

const DEFAULT_DELAY: u64 = 300;
const DEFAULT_RETRY_WINDOW: u64 = 24 * 3600;
const DEFAULT_LIFETIME: u64 = 36 * 24 * 3600;
/// kv's longest key.

#[derive(Debug)]
struct Settings {
    delay: u64,
    retry_window: u64,
    lifetime: u64,
    exempt: Vec<ClientPattern>,
}

#[derive(Debug)]
enum ClientPattern {
    Glob(Glob),
    Network(IpAddr, u8),
}

impl ClientPattern {
    fn parse(s: &str) -> Result<ClientPattern, String> {
        let Some((net, len)) = s.split_once('/') else {
            return Ok(ClientPattern::Glob(Glob::new(s)));
        };
        let bad = || format!("{s:?} is neither a glob nor a CIDR network");
        let net: IpAddr = net.trim().parse().map_err(|_| bad())?;
        let len: u8 = len.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok(ClientPattern::Network(net, len))
    }

    fn matches(&self, text: &str, ip: Option<IpAddr>) -> bool {
        match self {
            ClientPattern::Glob(g) => g.matches(text),
            ClientPattern::Network(net, len) => match (net, ip) {
                (IpAddr::V4(n), Some(IpAddr::V4(a))) => {
                    prefix_eq(u128::from(n.to_bits()), u128::from(a.to_bits()), 32, *len)
                }
                (IpAddr::V6(n), Some(IpAddr::V6(a))) => {
                    prefix_eq(n.to_bits(), a.to_bits(), 128, *len)
                }
                _ => false,
            },
        }
    }
}

/// Whether the top `len` of `width` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, width: u32, len: u8) -> bool {
    let shift = width - u32::from(len);
    shift >= width || (a >> shift) == (b >> shift)
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(load_settings)
}

fn load_settings() -> Settings {
    let mut s = Settings {
        delay: DEFAULT_DELAY,
        retry_window: DEFAULT_RETRY_WINDOW,
        lifetime: DEFAULT_LIFETIME,
        exempt: Vec::new(),
    };
    let table: Table = match config::all().parse() {
        Ok(t) => t,
        Err(e) => {
            log::warn(&format!("config is not a TOML table, using defaults: {e}"));
            return s;
        }
    };
    for (key, value) in &table {
        let seconds = |default: u64| match value.as_integer().map(u64::try_from) {
            Some(Ok(n)) => n,
            _ => {
                log::warn(&format!(
                    "`{key}` must be a number of seconds (0 or more); using {default}"
                ));
                default
            }
        };
        match key.as_str() {
            "delay" => s.delay = seconds(DEFAULT_DELAY),
            "retry_window" => s.retry_window = seconds(DEFAULT_RETRY_WINDOW),
            "lifetime" => s.lifetime = seconds(DEFAULT_LIFETIME),
            "exempt_clients" => s.exempt = exempt_clients(value),
            other => log::warn(&format!("unknown setting {other:?} ignored")),
        }
    }
    if s.retry_window <= s.delay {
        log::warn(&format!(
            "retry_window ({}) is not longer than delay ({}): no retry could ever pass; using {} and {}",
            s.retry_window, s.delay, DEFAULT_RETRY_WINDOW, DEFAULT_DELAY
        ));
        s.delay = DEFAULT_DELAY;
        s.retry_window = DEFAULT_RETRY_WINDOW;
    }
    s
}

fn exempt_clients(value: &Value) -> Vec<ClientPattern> {
    let list: &[Value] = match value {
        Value::Array(list) => list,
        Value::String(_) => std::slice::from_ref(value),
        _ => {
            log::warn("`exempt_clients` must be an array of strings; ignored");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for v in list {
        match v.as_str().map(ClientPattern::parse) {
            Some(Ok(p)) => out.push(p),
            Some(Err(why)) => log::warn(&format!("exempt_clients: {why}; ignored")),
            None => log::warn(&format!(
                "exempt_clients: entries must be strings, not {}; ignored",
                v.type_str()
            )),
        }
    }
    out
}

/// The client's address, an IPv4-mapped IPv6 address as IPv4.
fn client_ip(address: &str) -> Option<IpAddr> {
    let ip: IpAddr = address.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// The client network a triplet names: the /24 of IPv4, the /64 of IPv6.
fn network(address: &str, ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => address.to_lowercase(),
    }
}

fn greylisted() -> Decision {
    Decision::defer(451, "4.7.1", "Greylisted, please try again later")
}

struct Greylist;

impl RcptHook for Greylist {
    fn on_rcpt(envelope: Envelope, recipient: String) -> Decision {
        let client = &envelope.client;
        if client.account.is_some() {
            return Decision::cont();
        }
        let s = settings();
        let ip = client_ip(&client.address);
        if s.exempt.iter().any(|p| p.matches(&client.address, ip)) {
            return Decision::cont();
        }
        let triplet = format!(
            "{}|{}|{}",
            network(&client.address, ip),
            envelope.mail_from.as_deref().unwrap_or("").to_lowercase(),
            recipient.to_lowercase()
        );
        let good = kv::bounded_key("w", &triplet);
        let seen = kv::bounded_key("g", &triplet);
        let store = |key: &str, value: &[u8], ttl: u64| match kv::set(key, value, Some(ttl)) {
            Ok(()) => true,
            Err(e) => {
                log::warn(&format!(
                    "kv could not store {key:?}, letting it pass: {e:?}"
                ));
                false
            }
        };

        if kv::get(&good).is_some() {
            // Renew: a triplet stays good for `lifetime` since it was last seen.
            store(&good, b"1", s.lifetime);
            return Decision::cont();
        }
        let now = clock::now_millis();
        let first = kv::get(&seen)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|first| *first <= now && now - first < s.retry_window.saturating_mul(1000));
        match first {
            Some(first) if now - first >= s.delay.saturating_mul(1000) => {
                store(&good, b"1", s.lifetime);
                kv::delete(&seen);
                Decision::cont()
            }
            Some(_) => greylisted(),
            None => {
                if store(&seen, now.to_string().as_bytes(), s.retry_window) {
                    greylisted()
                } else {
                    Decision::cont()
                }
            }
        }
    }
}

wasmail_plugin_sdk::export!(Greylist: RcptHook);
