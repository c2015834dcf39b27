//! The trace header fields a receiving server adds (RFC 5321 4.4): `Return-Path:` at final
//! delivery and `Received:` always.

use std::fmt::Write as _;

use wasmail_types::{ClientInfo, ReversePath};

/// What a `Received:` field records.
#[derive(Debug)]
pub struct Received<'a> {
    pub client: &'a ClientInfo,
    pub hostname: &'a str,
    /// `ESMTPSA` etc. (RFC 3848).
    pub with: &'a str,
    pub id: &'a str,
    /// Named in a `for` clause only when the message has exactly one recipient (RFC 5321 7.2:
    /// otherwise the field would reveal the other recipients).
    pub single_recipient: Option<&'a str>,
    pub unix_seconds: i64,
}

impl Received<'_> {
    /// The field with folded continuation lines, ending in CRLF.
    pub fn render(&self) -> String {
        let c = self.client;
        let mut out = String::from("Received: from ");
        out.push_str(c.helo.as_deref().map_or("unknown", sanitize));
        let _ = write!(out, " ([{}] port {})", address_literal(c), c.peer.port());
        let _ = write!(
            out,
            "\r\n\tby {} (wasmail) with {}",
            self.hostname, self.with
        );
        let _ = write!(out, " id {}", self.id);
        if let Some(tls) = &c.tls {
            let _ = write!(
                out,
                "\r\n\t(using {} with cipher {})",
                sanitize(&tls.protocol),
                sanitize(&tls.cipher)
            );
        }
        if let Some(account) = &c.authenticated {
            let _ = write!(out, "\r\n\t(authenticated as {})", sanitize(account));
        }
        if let Some(rcpt) = self.single_recipient {
            let _ = write!(out, "\r\n\tfor <{}>", sanitize(rcpt));
        }
        let _ = write!(
            out,
            "; {}\r\n",
            wasmail_types::date::rfc5322(self.unix_seconds)
        );
        out
    }
}

/// `Return-Path: <sender>` (empty brackets for the null sender).
pub fn return_path(from: &ReversePath) -> String {
    match from.address() {
        Some(a) => format!("Return-Path: <{}>\r\n", sanitize(&a.to_string())),
        None => "Return-Path: <>\r\n".to_owned(),
    }
}

fn address_literal(c: &ClientInfo) -> String {
    match c.peer.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPv6:{ip}"),
        },
    }
}

/// Text from a client goes into a header: keep it on one line and free of comment delimiters
/// that would change the field's structure.
fn sanitize(text: &str) -> &str {
    if text
        .chars()
        .all(|c| !c.is_control() && !matches!(c, '(' | ')' | ';' | '<' | '>'))
    {
        text
    } else {
        "(invalid)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmail_types::TlsInfo;

    #[test]
    fn received_records_tls_account_and_the_single_recipient() {
        let mut client = ClientInfo::new(
            "192.0.2.7:40000".parse().unwrap(),
            "192.0.2.1:587".parse().unwrap(),
        );
        client.helo = Some("client.example".into());
        client.tls = Some(TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            server_name: None,
        });
        client.authenticated = Some("alice@example.org".into());
        let r = Received {
            client: &client,
            hostname: "mx.example.org",
            with: "ESMTPSA",
            id: "abc",
            single_recipient: Some("bob@example.org"),
            unix_seconds: 0,
        };
        assert_eq!(
            r.render(),
            "Received: from client.example ([192.0.2.7] port 40000)\r\n\
             \tby mx.example.org (wasmail) with ESMTPSA id abc\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\
             \t(authenticated as alice@example.org)\r\n\
             \tfor <bob@example.org>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        let mut hostile = client.clone();
        hostile.helo = Some("evil\r\nX-Injected: 1".into());
        hostile.peer = "[2001:db8::1]:25".parse().unwrap();
        let r = Received {
            client: &hostile,
            single_recipient: None,
            ..r
        };
        let text = r.render();
        assert!(text.starts_with("Received: from (invalid) ([IPv6:2001:db8::1] port 25)"));
        assert!(!text.contains("X-Injected"));
        assert!(!text.contains("for <"));
    }

    #[test]
    fn return_path_of_the_null_sender_is_empty() {
        assert_eq!(return_path(&ReversePath::Null), "Return-Path: <>\r\n");
        let from = ReversePath::parse("<a@example.org>").unwrap();
        assert_eq!(return_path(&from), "Return-Path: <a@example.org>\r\n");
    }
}
