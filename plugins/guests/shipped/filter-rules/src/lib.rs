//! # filter-rules: reject, defer, quarantine, tag or discard mail by pattern
//!
//! A list of rules, each a set of conditions on the envelope or the message headers and one
//! action. Rules are checked in the order they are written; at each SMTP stage the first
//! matching rule with a deciding action decides, and `add-header` rules add their field and let
//! the checking go on.
//!
//! ## Configuration
//!
//! The rules are the `rule` array of the plugin's config table. In the server's config file:
//!
//! ```toml
//! [[plugins]]
//! name = "rules"
//! file = "filter_rules.wasm"
//! grants = { log = true }          # log: rules that are ignored are reported (see below)
//!
//! [[plugins.config.rule]]
//! header = "Subject"
//! contains = "lottery"
//! action = "reject"
//! reply = "550 5.7.1 Message refused by content rule"
//!
//! [[plugins.config.rule]]
//! mail_from = "*@bad.example"
//! action = "defer"
//!
//! [[plugins.config.rule]]
//! header = "X-Spam-Flag"
//! equals = "YES"
//! action = "quarantine"
//! folder = "Junk"
//!
//! [[plugins.config.rule]]
//! rcpt = "abuse@*"
//! action = "add-header"
//! add = { name = "X-Abuse-Report", value = "yes" }
//! ```
//!
//! (Inside the plugin's own table, which is what the plugin reads, each rule is a `[[rule]]`.)
//!
//! ## Conditions
//!
//! A rule has one or more conditions, and matches when **all** of them hold. A condition's value
//! is a string or an array of strings; an array holds when **any** of its strings does.
//!
//! | key | holds when |
//! | --- | --- |
//! | `client = "192.0.2.*"` | the client's IP address matches the glob |
//! | `helo = "*.dynamic.example"` | the EHLO/HELO name matches the glob |
//! | `mail_from = "*@bad.example"` | the MAIL FROM address matches the glob; the null sender `<>` is the empty string, so `mail_from = ""` matches bounces |
//! | `rcpt = "abuse@*"` | the recipient matches the glob (at the data stage: any recipient of the message) |
//! | `header = "Subject"` | the message has a header field of this name (case-insensitive); with a value test below, at least one field of that name passes every value test given |
//! | `contains = "lottery"` | (with `header`) the field's value contains the text, ignoring case |
//! | `equals = "YES"` | (with `header`) the field's value, without surrounding spaces, is the text, ignoring case |
//! | `glob = "*@spam.example>"` | (with `header`) the field's value, without surrounding spaces, matches the glob |
//!
//! Globs are whole-string matches that ignore case: `*` stands for any run of characters (also
//! none), `?` for exactly one, every other character for itself. There are no regular
//! expressions. Header values are unfolded; a `From:` field is matched as written, display
//! name and angle brackets included (`glob = "*@spam.example>"`).
//!
//! ## Actions
//!
//! | `action` | effect | extra keys |
//! | --- | --- | --- |
//! | `reject` | refuse permanently | `reply`, a 5xx reply (default `550 5.7.1 Refused by local policy rule`) |
//! | `defer` | refuse temporarily; the sender retries | `reply`, a 4xx reply (default `451 4.7.1 Deferred by local policy rule, please try again later`) |
//! | `quarantine` | accept, deliver into this folder of every local recipient | `folder` (default `Junk`) |
//! | `discard` | accept and drop the message (logged by the server) | |
//! | `accept` | accept now: later filters at this stage are skipped | |
//! | `add-header` | add a header field and go on with the next rule | `add = { name = "X-Rule", value = "lottery" }` |
//!
//! `reply` is `"<code> [<enhanced code>] <text>"`, e.g. `"550 5.7.1 Message refused"`: the
//! code must fit the action (5xx for `reject`, 4xx for `defer`), the enhanced code, if given,
//! must have the same class, and the text is required (`\n` makes a multi-line reply).
//!
//! ## When rules run
//!
//! Each rule runs at the first SMTP stage where everything it needs is known and its action
//! takes effect:
//!
//! - any rule with `header`, and any `quarantine`, `discard` or `add-header` rule (these only take
//!   effect on a message): after DATA, against the complete envelope;
//! - otherwise a rule with `rcpt`: at each RCPT TO, against that recipient (a reject refuses that
//!   recipient only);
//! - otherwise a rule with `mail_from`: at MAIL FROM;
//! - otherwise a rule with `helo`: at EHLO/HELO;
//! - otherwise (only `client`): when the client connects.
//!
//! At each stage only that stage's rules are checked, in config order. The first matching rule
//! whose action is not `add-header` decides; fields from `add-header` rules matched before it
//! are added too (up to 64 per message).
//!
//! ## Rules that are wrong
//!
//! A rule with an unknown key, no condition, a value test without `header`, an unknown action,
//! a reply that does not fit its action, a key its action does not use, an invalid folder or
//! header field is ignored, and the others apply. Each ignored rule is logged once per SMTP
//! transaction at `warn`, with its number (counting from 1) and why. The plugin imports
//! `log` for this, so its `log` grant must stay on (the server grants `log` by default). A
//! settings key other than `rule` is reported the same way.

use std::sync::OnceLock;

use toml::{Table, Value};
use wasmail_plugin_sdk::matching::Glob;
use wasmail_plugin_sdk::{
    Client, ConnectHook, DataHook, Decision, Envelope, Header, HeloHook, MailFromHook, Message,
    Modification, RcptHook, Reply, Verdict, config, log,
};

/// Most modifications the host accepts from one call.
const MAX_MODIFICATIONS: usize = 64;

/// The SMTP stage a rule is checked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Connect,
    Helo,
    MailFrom,
    Rcpt,
    Data,
}

#[derive(Debug)]
enum Action {
    Accept,
    Reject(Reply),
    Defer(Reply),
    Quarantine(String),
    Discard,
    AddHeader(Header),
}

#[derive(Debug)]
struct Rule {
    stage: Stage,
    client: Vec<Glob>,
    helo: Vec<Glob>,
    mail_from: Vec<Glob>,
    rcpt: Vec<Glob>,
    header: Option<HeaderTest>,
    action: Action,
}

#[derive(Debug)]
struct HeaderTest {
    name: String,
    /// Lowercase.
    contains: Vec<String>,
    /// Lowercase.
    equals: Vec<String>,
    glob: Vec<Glob>,
}

/// What is known at the stage being checked.
struct Facts<'a> {
    client: &'a str,
    helo: &'a str,
    mail_from: &'a str,
    /// The recipient at RCPT; every recipient after DATA.
    rcpts: &'a [String],
    message: Option<&'a Message>,
}

fn any_glob(globs: &[Glob], text: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.matches(text))
}

impl HeaderTest {
    fn passes(&self, value: &str) -> bool {
        let lower = value.to_lowercase();
        let trimmed = lower.trim();
        (self.contains.is_empty() || self.contains.iter().any(|c| lower.contains(c.as_str())))
            && (self.equals.is_empty() || self.equals.iter().any(|e| e == trimmed))
            && any_glob(&self.glob, value.trim())
    }
}

impl Rule {
    fn matches(&self, facts: &Facts<'_>) -> bool {
        if !any_glob(&self.client, facts.client)
            || !any_glob(&self.helo, facts.helo)
            || !any_glob(&self.mail_from, facts.mail_from)
        {
            return false;
        }
        if !self.rcpt.is_empty() && !facts.rcpts.iter().any(|r| any_glob(&self.rcpt, r)) {
            return false;
        }
        match (&self.header, facts.message) {
            (None, _) => true,
            (Some(test), Some(message)) => message
                .header(&test.name)
                .iter()
                .any(|value| test.passes(value)),
            (Some(_), None) => false,
        }
    }
}

/// The rules of this instance's config, read once per instance (that is, per SMTP transaction).
fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(load_rules)
}

fn load_rules() -> Vec<Rule> {
    let table: Table = match config::all().parse() {
        Ok(t) => t,
        Err(e) => {
            log::error(&format!("config is not a TOML table, no rules apply: {e}"));
            return Vec::new();
        }
    };
    for key in table.keys().filter(|k| *k != "rule") {
        log::warn(&format!(
            "unknown setting {key:?} ignored (rules go in the `rule` array)"
        ));
    }
    let list = match table.get("rule") {
        None => return Vec::new(),
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => {
            log::warn("`rule` must be an array of tables ([[rule]]); no rules apply");
            return Vec::new();
        }
    };
    let mut rules = Vec::with_capacity(list.len());
    for (i, value) in list.iter().enumerate() {
        match parse_rule(value) {
            Ok(rule) => rules.push(rule),
            Err(why) => log::warn(&format!("rule {} ignored: {why}", i + 1)),
        }
    }
    rules
}

const KEYS: &[&str] = &[
    "client",
    "helo",
    "mail_from",
    "rcpt",
    "header",
    "contains",
    "equals",
    "glob",
    "action",
    "reply",
    "folder",
    "add",
];

fn parse_rule(value: &Value) -> Result<Rule, String> {
    let t = value.as_table().ok_or("a rule must be a table")?;
    if let Some(key) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key {key:?}"));
    }
    let globs = |key: &str| -> Result<Vec<Glob>, String> {
        Ok(strings(t, key)?.iter().map(|s| Glob::new(s)).collect())
    };
    let lower = |key: &str| -> Result<Vec<String>, String> {
        Ok(strings(t, key)?.iter().map(|s| s.to_lowercase()).collect())
    };
    let client = globs("client")?;
    let helo = globs("helo")?;
    let mail_from = globs("mail_from")?;
    let rcpt = globs("rcpt")?;
    let contains = lower("contains")?;
    let equals = lower("equals")?;
    let equals = equals.into_iter().map(|e| e.trim().to_owned()).collect();
    let glob = globs("glob")?;
    let header = match string(t, "header")? {
        Some(name) => {
            check_header_name(name)?;
            Some(HeaderTest {
                name: name.to_owned(),
                contains,
                equals,
                glob,
            })
        }
        None if ["contains", "equals", "glob"]
            .iter()
            .any(|k| t.contains_key(*k)) =>
        {
            return Err("`contains`, `equals` and `glob` need a `header`".into());
        }
        None => None,
    };
    if header.is_none()
        && [&client, &helo, &mail_from, &rcpt]
            .iter()
            .all(|g| g.is_empty())
    {
        return Err(
            "a rule needs a condition (header, mail_from, rcpt, helo or client); \
             to match everything use client = \"*\""
                .into(),
        );
    }

    let action_name = string(t, "action")?.ok_or("`action` is missing")?;
    let uses: &[&str] = match action_name {
        "reject" | "defer" => &["reply"],
        "quarantine" => &["folder"],
        "add-header" => &["add"],
        _ => &[],
    };
    if let Some(key) = ["reply", "folder", "add"]
        .iter()
        .find(|k| t.contains_key(**k) && !uses.contains(k))
    {
        return Err(format!("`{key}` does not apply to action {action_name:?}"));
    }
    let action = match action_name {
        "accept" => Action::Accept,
        "discard" => Action::Discard,
        "reject" => Action::Reject(match string(t, "reply")? {
            Some(r) => parse_reply(r, 5)?,
            None => Reply::new(550, "5.7.1", "Refused by local policy rule"),
        }),
        "defer" => Action::Defer(match string(t, "reply")? {
            Some(r) => parse_reply(r, 4)?,
            None => Reply::new(
                451,
                "4.7.1",
                "Deferred by local policy rule, please try again later",
            ),
        }),
        "quarantine" => {
            let folder = string(t, "folder")?.unwrap_or("Junk");
            check_folder(folder)?;
            Action::Quarantine(folder.to_owned())
        }
        "add-header" => {
            let add = t
                .get("add")
                .ok_or("add-header needs `add = { name = \"...\", value = \"...\" }`")?;
            Action::AddHeader(parse_add(add)?)
        }
        other => {
            return Err(format!(
                "unknown action {other:?} (expected reject, defer, quarantine, add-header, \
                 discard or accept)"
            ));
        }
    };

    let stage = if header.is_some()
        || matches!(
            action,
            Action::Quarantine(_) | Action::Discard | Action::AddHeader(_)
        ) {
        Stage::Data
    } else if !rcpt.is_empty() {
        Stage::Rcpt
    } else if !mail_from.is_empty() {
        Stage::MailFrom
    } else if !helo.is_empty() {
        Stage::Helo
    } else {
        Stage::Connect
    };
    Ok(Rule {
        stage,
        client,
        helo,
        mail_from,
        rcpt,
        header,
        action,
    })
}

/// An optional string value.
fn string<'t>(t: &'t Table, key: &str) -> Result<Option<&'t str>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

/// A string or a non-empty array of strings; empty if absent.
fn strings<'t>(t: &'t Table, key: &str) -> Result<Vec<&'t str>, String> {
    match t.get(key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("`{key}` must hold only strings"))
            })
            .collect(),
        Some(_) => Err(format!(
            "`{key}` must be a string or a non-empty array of strings"
        )),
    }
}

/// `"550 5.7.1 text"`: a reply of class `class` (4 or 5), checked the way the host will check
/// it, so a bad reply is caught here rather than failing every message it applies to.
fn parse_reply(reply: &str, class: u16) -> Result<Reply, String> {
    let wrong = |why: &str| format!("reply {reply:?}: {why}");
    let (code, rest) = reply.trim().split_once(' ').unwrap_or((reply.trim(), ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong("must start with a three-digit code"));
    }
    let code: u16 = code.parse().map_err(|_| wrong("bad code"))?;
    if code / 100 != class {
        return Err(wrong(&format!(
            "the code must be {class}xx for this action"
        )));
    }
    let rest = rest.trim_start();
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let (enhanced, text) = if first.starts_with(|c: char| c.is_ascii_digit()) && first.contains('.')
    {
        check_enhanced(first, class).map_err(&wrong)?;
        (Some(first.to_owned()), after.trim_start())
    } else {
        (None, rest)
    };
    if text.trim().is_empty() {
        return Err(wrong("text is missing"));
    }
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() > 32 {
        return Err(wrong("more than 32 lines"));
    }
    if lines
        .iter()
        .any(|l| l.len() > 500 || l.chars().any(char::is_control))
    {
        return Err(wrong(
            "a line is longer than 500 octets or has a control character",
        ));
    }
    Ok(Reply {
        code,
        enhanced,
        text: text.to_owned(),
    })
}

/// RFC 3463 `class.subject.detail`, subject and detail of 1 to 3 digits.
fn check_enhanced(code: &str, class: u16) -> Result<(), &'static str> {
    let parts: Vec<&str> = code.split('.').collect();
    let digits = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
    };
    match parts.as_slice() {
        [c, s, d] if digits(c, 1) && digits(s, 3) && digits(d, 3) => {
            if c.parse::<u16>().ok() == Some(class) {
                Ok(())
            } else {
                Err("the enhanced code's class must match the reply code")
            }
        }
        _ => Err("bad enhanced status code (expected e.g. 5.7.1)"),
    }
}

/// An RFC 5322 field name: printable ASCII except `:`, at most 76 octets.
fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 76
        || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
    {
        return Err(format!("{name:?} is not a header field name"));
    }
    Ok(())
}

/// `add = { name = "...", value = "..." }`.
fn parse_add(add: &Value) -> Result<Header, String> {
    let t = add
        .as_table()
        .ok_or("`add` must be a table { name = \"...\", value = \"...\" }")?;
    if let Some(key) = t.keys().find(|k| *k != "name" && *k != "value") {
        return Err(format!("unknown key {key:?} in `add`"));
    }
    let name = string(t, "name")?.ok_or("`add` needs a `name`")?;
    let value = string(t, "value")?.ok_or("`add` needs a `value`")?;
    check_header_name(name)?;
    if value.len() > 900 || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("the added value is longer than 900 octets or has a control character".into());
    }
    Ok(Header {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// A mailbox name the server will accept: not empty, at most 255 octets, no control or
/// wildcard characters, no empty level between `/`.
fn check_folder(folder: &str) -> Result<(), String> {
    if folder.is_empty()
        || folder.len() > 255
        || folder
            .chars()
            .any(|c| c.is_control() || c == '*' || c == '%')
        || folder.split('/').any(str::is_empty)
    {
        return Err(format!("{folder:?} is not a valid folder name"));
    }
    Ok(())
}

/// Checks the rules of `stage` in order.
fn run(stage: Stage, facts: &Facts<'_>) -> Decision {
    let mut modifications = Vec::new();
    for rule in rules().iter().filter(|r| r.stage == stage) {
        if !rule.matches(facts) {
            continue;
        }
        let verdict = match &rule.action {
            Action::AddHeader(header) => {
                if modifications.len() < MAX_MODIFICATIONS {
                    modifications.push(Modification::AddHeader(header.clone()));
                }
                continue;
            }
            Action::Accept => Verdict::Accept,
            Action::Reject(reply) => Verdict::Reject(reply.clone()),
            Action::Defer(reply) => Verdict::Defer(reply.clone()),
            Action::Quarantine(folder) => Verdict::Quarantine(folder.clone()),
            Action::Discard => Verdict::Discard,
        };
        return Decision {
            verdict,
            modifications,
        };
    }
    Decision {
        verdict: Verdict::Continue,
        modifications,
    }
}

fn envelope_facts<'a>(envelope: &'a Envelope, rcpts: &'a [String]) -> Facts<'a> {
    Facts {
        client: &envelope.client.address,
        helo: envelope.client.helo.as_deref().unwrap_or(""),
        mail_from: envelope.mail_from.as_deref().unwrap_or(""),
        rcpts,
        message: None,
    }
}

struct Rules;

impl ConnectHook for Rules {
    fn on_connect(client: Client) -> Decision {
        let facts = Facts {
            client: &client.address,
            helo: "",
            mail_from: "",
            rcpts: &[],
            message: None,
        };
        run(Stage::Connect, &facts)
    }
}

impl HeloHook for Rules {
    fn on_helo(client: Client, helo: String) -> Decision {
        let facts = Facts {
            client: &client.address,
            helo: &helo,
            mail_from: "",
            rcpts: &[],
            message: None,
        };
        run(Stage::Helo, &facts)
    }
}

impl MailFromHook for Rules {
    fn on_mail_from(envelope: Envelope) -> Decision {
        run(Stage::MailFrom, &envelope_facts(&envelope, &[]))
    }
}

impl RcptHook for Rules {
    fn on_rcpt(envelope: Envelope, recipient: String) -> Decision {
        let rcpts = [recipient];
        run(Stage::Rcpt, &envelope_facts(&envelope, &rcpts))
    }
}

impl DataHook for Rules {
    fn on_data(envelope: Envelope, message: &Message) -> Decision {
        let mut facts = envelope_facts(&envelope, &envelope.rcpt_to);
        facts.message = Some(message);
        run(Stage::Data, &facts)
    }
}

wasmail_plugin_sdk::export!(Rules: ConnectHook, HeloHook, MailFromHook, RcptHook, DataHook);
