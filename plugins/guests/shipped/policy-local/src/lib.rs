//! # policy-local: the default delivery policy
//!
//! Decides, for each recipient, where its mail goes: into local mailboxes (after aliases,
//! subaddressing and catch-all), onward (relay, for authenticated senders only), or nowhere
//! (rejected). It exports the `routing` interface (world `delivery-policy`).
//!
//! ## Configuration
//!
//! ```toml
//! [[plugins]]
//! name = "local"
//! file = "policy_local.wasm"
//! grants = { log = true }
//!
//! [plugins.config]
//! domains = ["example.org", "example.net"]        # the local domains
//! accounts = ["alice@example.org", "bob@example.org"]   # optional: the accounts that exist
//! plus_folders = false                             # optional: user+tag@ into folder "tag"
//!
//! [plugins.config.aliases]                         # optional
//! "postmaster@example.org" = ["alice@example.org"]
//! "sales@example.org" = ["alice@example.org", "bob@example.org"]
//!
//! [plugins.config.catch_all]                       # optional, needs `accounts`
//! "example.org" = "alice@example.org"
//!
//! [plugins.config.folders]                         # optional
//! "alice+lists@example.org" = "Lists"
//! ```
//!
//! | key | meaning |
//! | --- | --- |
//! | `domains` | The local domains (compared ignoring case). Mail for any other domain is not ours. |
//! | `accounts` | The accounts that exist (addresses, compared ignoring case). **When absent, every address at a local domain is taken as an account**: the policy cannot see the server's user list, so without this list it accepts any local part and leaves unknown users to the mailbox store. |
//! | `aliases` | Address → address or list of addresses. Mail for the key goes to every target instead (targets may be aliases themselves). A target equal to its own key means the account of that name (`"alice@x" = ["alice@x", "archive@x"]` keeps a copy). |
//! | `catch_all` | Domain → address. A recipient at that local domain that is neither an account nor an alias goes there. Only with `accounts` (without it there are no unknown users). |
//! | `folders` | Address → folder. Mail for exactly that address (subaddress included, or an alias target) is delivered into the folder instead of INBOX. |
//! | `plus_folders` | `true`: `user+tag@domain` is delivered into folder `tag` of `user@domain` (unless `folders` names one); `false` (default): into its INBOX. |
//!
//! ## How a recipient is routed
//!
//! 1. **Not a local domain**: `relay` if the client authenticated (SMTP AUTH), otherwise
//!    `reject 550 5.7.1 Relaying denied`. Never an open relay.
//! 2. **An alias** (the full address, else for `user+tag@domain` the address `user@domain`): the
//!    targets, each routed by these same rules (without catch-all). Expansion stops at 8 levels
//!    of aliases, and an alias that comes back to one being expanded is a loop: either rejects
//!    the recipient with `550 5.4.6 <addr>: Alias expansion loop` (and is logged). Duplicate
//!    mailboxes are delivered once. A target that is unknown, or not at a local domain (the
//!    routing interface has no way to forward), is skipped with a warning; an alias left with
//!    no target is an unknown user.
//! 3. **Subaddressing**: `user+tag@domain` is the account `user@domain` (the first `+`
//!    separates the tag). Into folder `tag` only with `plus_folders = true`, and only when the
//!    tag is a plain name (ASCII letters, digits, `-`, `_`, `.`, not starting with `.`, at most
//!    64 characters; `INBOX` in any case is INBOX), since the sender chooses it; otherwise INBOX.
//!    Note that a sender can then choose any such folder, `Trash` included.
//! 4. **An account** (any address at a local domain, or one listed in `accounts`):
//!    `local([account])`, into the folder from `folders` or the tag, else INBOX. Account names
//!    are the addresses in lowercase.
//! 5. **Unknown**: the domain's `catch_all` target if it has one, else
//!    `reject 550 5.1.1 <addr>: Recipient address rejected: User unknown`.
//!
//! ## Bad settings
//!
//! A value of the wrong type, an invalid folder name or an unknown key is logged at `warn` and
//! ignored (an alias with a bad target list is left out; a bad `domains` means no local domain,
//! so nothing is delivered locally and unauthenticated mail is refused: fail closed). Logging
//! needs the `log` grant (on by default in the server).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use toml::{Table, Value};
use wasmail_plugin_sdk::{DeliveryPolicy, Envelope, LocalTarget, Route, config, log};

/// Alias levels followed at most.
const MAX_DEPTH: usize = 8;
/// Mailboxes one recipient may expand to (the host's limit for a local route).
const MAX_TARGETS: usize = 100;

#[derive(Debug, Default)]
struct Settings {
    domains: BTreeSet<String>,
    accounts: Option<BTreeSet<String>>,
    aliases: BTreeMap<String, Vec<String>>,
    catch_all: BTreeMap<String, String>,
    folders: BTreeMap<String, String>,
    plus_folders: bool,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(load_settings)
}

fn load_settings() -> Settings {
    let mut s = Settings::default();
    let table: Table = match config::all().parse() {
        Ok(t) => t,
        Err(e) => {
            log::warn(&format!(
                "config is not a TOML table, no local domains: {e}"
            ));
            return s;
        }
    };
    for (key, value) in &table {
        match key.as_str() {
            "domains" => {
                if let Some(list) = string_list(key, value) {
                    s.domains = list.iter().map(|d| normalize_domain(d)).collect();
                }
            }
            "accounts" => {
                s.accounts =
                    string_list(key, value).map(|l| l.iter().map(|a| a.to_lowercase()).collect());
            }
            "aliases" => {
                for (alias, targets) in string_map(key, value) {
                    if let Some(list) = string_list(&format!("aliases.{alias:?}"), targets) {
                        s.aliases.insert(
                            alias.to_lowercase(),
                            list.iter().map(|t| t.to_lowercase()).collect(),
                        );
                    }
                }
            }
            "catch_all" => {
                for (domain, target) in string_map(key, value) {
                    match target.as_str() {
                        Some(t) => {
                            s.catch_all
                                .insert(normalize_domain(domain), t.to_lowercase());
                        }
                        None => {
                            log::warn(&format!("catch_all.{domain:?} must be an address; ignored"))
                        }
                    }
                }
            }
            "folders" => {
                for (address, folder) in string_map(key, value) {
                    match folder.as_str() {
                        Some(f) if valid_folder(f) => {
                            s.folders.insert(address.to_lowercase(), f.to_owned());
                        }
                        _ => log::warn(&format!(
                            "folders.{address:?} must be a valid folder name; ignored"
                        )),
                    }
                }
            }
            "plus_folders" => match value.as_bool() {
                Some(b) => s.plus_folders = b,
                None => log::warn("plus_folders must be true or false; using false"),
            },
            other => log::warn(&format!("unknown setting {other:?} ignored")),
        }
    }
    if s.domains.is_empty() {
        log::warn("no local domains configured (`domains`): no mail is delivered locally");
    }
    let foreign = |a: &String| domain_of(a).is_none_or(|d| !s.domains.contains(d));
    for (what, address) in s
        .accounts
        .iter()
        .flatten()
        .map(|a| ("accounts", a))
        .chain(s.aliases.keys().map(|a| ("aliases", a)))
    {
        if foreign(address) {
            log::warn(&format!(
                "{what}: {address:?} is not at a local domain and is never used"
            ));
        }
    }
    if s.accounts.is_none() && !s.catch_all.is_empty() {
        log::warn("catch_all has no effect without `accounts`: every local address is an account");
    }
    s
}

fn normalize_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d)
}

/// A string or an array of strings.
fn string_list<'v>(key: &str, value: &'v Value) -> Option<Vec<&'v str>> {
    let list = match value {
        Value::String(s) => return Some(vec![s.as_str()]),
        Value::Array(list) => list,
        _ => {
            log::warn(&format!(
                "`{key}` must be a string or an array of strings; ignored"
            ));
            return None;
        }
    };
    let strings: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
    if strings.is_none() {
        log::warn(&format!("`{key}` must hold only strings; ignored"));
    }
    strings
}

/// A table, or nothing (logged) if it is something else.
fn string_map<'v>(key: &str, value: &'v Value) -> impl Iterator<Item = (&'v String, &'v Value)> {
    let table = value.as_table();
    if table.is_none() {
        log::warn(&format!("`{key}` must be a table; ignored"));
    }
    table.into_iter().flatten()
}

/// A folder name the store accepts (not empty, at most 255 octets, no control or wildcard
/// characters, no empty level between `/`).
fn valid_folder(folder: &str) -> bool {
    !folder.is_empty()
        && folder.len() <= 255
        && !folder
            .chars()
            .any(|c| c.is_control() || c == '*' || c == '%')
        && !folder.split('/').any(str::is_empty)
}

/// A subaddress tag usable as a folder name.
fn tag_folder(tag: &str) -> Option<String> {
    if tag.is_empty()
        || tag.len() > 64
        || tag.starts_with('.')
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || tag.eq_ignore_ascii_case("INBOX")
    {
        return None;
    }
    Some(tag.to_owned())
}

#[derive(Debug)]
enum Failure {
    Unknown,
    Loop(Vec<String>),
    TooMany,
}

struct Expansion<'s> {
    s: &'s Settings,
    /// Aliases being expanded, outermost first.
    path: Vec<String>,
    out: Vec<LocalTarget>,
}

impl Expansion<'_> {
    /// Routes `address` (a local-domain address as given, any case) into `self.out`.
    fn resolve(&mut self, address: &str, catch_all: bool) -> Result<(), Failure> {
        let lower = address.to_lowercase();
        let Some((local, domain)) = lower.rsplit_once('@') else {
            return Err(Failure::Unknown);
        };
        let domain = normalize_domain(domain);
        let lower = format!("{local}@{domain}");
        // user+tag: the tag as written (folders are case-sensitive), the base in lowercase.
        let tag = address
            .rsplit_once('@')
            .and_then(|(l, _)| l.split_once('+'))
            .filter(|(user, _)| !user.is_empty())
            .map(|(_, tag)| tag);
        let base = match local.split_once('+') {
            Some((user, _)) if tag.is_some() => format!("{user}@{domain}"),
            _ => lower.clone(),
        };

        if self.path.last() != Some(&lower) {
            if let Some(targets) = self.s.aliases.get(&lower) {
                return self.expand(&lower, targets);
            }
            if base != lower
                && self.path.last() != Some(&base)
                && let Some(targets) = self.s.aliases.get(&base)
            {
                return self.expand(&base, targets);
            }
        }

        let known = self.s.accounts.as_ref().is_none_or(|a| a.contains(&base));
        if !known {
            return match self.s.catch_all.get(&domain) {
                Some(target) if catch_all => {
                    let target = target.clone();
                    self.target(&lower, &target)
                }
                _ => Err(Failure::Unknown),
            };
        }
        let folder = self
            .s
            .folders
            .get(&lower)
            .cloned()
            .or_else(|| tag.filter(|_| self.s.plus_folders).and_then(tag_folder));
        let target = LocalTarget {
            account: base,
            folder,
        };
        if !self.out.contains(&target) {
            if self.out.len() == MAX_TARGETS {
                return Err(Failure::TooMany);
            }
            self.out.push(target);
        }
        Ok(())
    }

    fn expand(&mut self, alias: &str, targets: &[String]) -> Result<(), Failure> {
        if self.path.iter().any(|a| a == alias) || self.path.len() >= MAX_DEPTH {
            let mut path = self.path.clone();
            path.push(alias.to_owned());
            return Err(Failure::Loop(path));
        }
        self.path.push(alias.to_owned());
        for target in targets {
            if target == alias {
                // Self-reference: the account of that name.
                self.resolve_account(alias)?;
            } else {
                self.target(alias, target)?;
            }
        }
        self.path.pop();
        Ok(())
    }

    /// The account `address` itself, not its alias.
    fn resolve_account(&mut self, address: &str) -> Result<(), Failure> {
        // `resolve` skips the alias that is being expanded (the last on the path).
        match self.resolve(address, false) {
            Err(Failure::Unknown) => {
                log::warn(&format!(
                    "alias {address:?} delivers to itself, but there is no such account; skipped"
                ));
                Ok(())
            }
            other => other,
        }
    }

    /// One target of `from` (an alias or a catch-all): skipped (logged) if not deliverable here.
    fn target(&mut self, from: &str, target: &str) -> Result<(), Failure> {
        if domain_of(target).is_none_or(|d| !self.s.domains.contains(&normalize_domain(d))) {
            log::warn(&format!(
                "{from:?} -> {target:?}: not a local address (forwarding is not supported); skipped"
            ));
            return Ok(());
        }
        match self.resolve(target, false) {
            Err(Failure::Unknown) => {
                log::warn(&format!("{from:?} -> {target:?}: no such account; skipped"));
                Ok(())
            }
            other => other,
        }
    }
}

struct Local;

impl DeliveryPolicy for Local {
    fn route(recipient: String, envelope: Envelope) -> Route {
        let s = settings();
        let Some(domain) = domain_of(&recipient) else {
            return Route::reject(
                550,
                "5.1.3",
                format!("<{recipient}>: Bad recipient address syntax"),
            );
        };
        if !s.domains.contains(&normalize_domain(domain)) {
            return if envelope.client.account.is_some() {
                Route::Relay
            } else {
                Route::reject(550, "5.7.1", "Relaying denied")
            };
        }
        let mut x = Expansion {
            s,
            path: Vec::new(),
            out: Vec::new(),
        };
        match x.resolve(&recipient, true) {
            Ok(()) if !x.out.is_empty() => Route::Local(x.out),
            Ok(()) | Err(Failure::Unknown) => Route::reject(
                550,
                "5.1.1",
                format!("<{recipient}>: Recipient address rejected: User unknown"),
            ),
            Err(Failure::Loop(path)) => {
                log::error(&format!(
                    "alias loop or more than {MAX_DEPTH} levels of aliases for {recipient:?}: {}",
                    path.join(" -> ")
                ));
                Route::reject(550, "5.4.6", format!("<{recipient}>: Alias expansion loop"))
            }
            Err(Failure::TooMany) => {
                log::error(&format!(
                    "{recipient:?} expands to more than {MAX_TARGETS} mailboxes"
                ));
                Route::reject(
                    550,
                    "5.3.0",
                    format!("<{recipient}>: Alias expands to too many mailboxes"),
                )
            }
        }
    }
}

wasmail_plugin_sdk::export!(Local: DeliveryPolicy);
