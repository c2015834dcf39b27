//! The replies the session composes itself, and the EHLO capability list.
//!
//! Every reply here but the greeting, HELO/EHLO and the class-3 intermediate replies (334, 354)
//! carries an RFC 3463 enhanced status code; a test builds each one so a typo cannot panic in
//! [`Reply::fixed`] at run time.

use wasmail_types::{EnhancedCode, Reply};

/// A reply whose text is composed at run time (e.g. with the hostname or a count). The pieces
/// come from the session (a sanitised hostname, numbers), so `Reply::new` cannot fail; should
/// it ever, a fixed text goes out instead of a panic.
fn composed(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> Reply {
    let enhanced = enhanced.map(|(c, s, d)| EnhancedCode::new(c, s, d));
    Reply::new(code, enhanced, text).unwrap_or_else(|_| match code {
        220 => Reply::fixed(220, (2, 0, 0), "Service ready"),
        250 => Reply::fixed(250, (2, 0, 0), "Ok"),
        421 => Reply::fixed(421, (4, 7, 0), "Closing connection"),
        _ => Reply::fixed(451, (4, 3, 0), "Local error"),
    })
}

/// `220 <hostname> ESMTP wasmail`.
pub(crate) fn greeting(hostname: &str) -> Reply {
    composed(220, None, &format!("{hostname} ESMTP wasmail"))
}

/// The EHLO reply: `250-<hostname>` then the capabilities in a fixed order.
pub(crate) fn ehlo(hostname: &str, max_size: u64, starttls: bool, auth: bool) -> Reply {
    let mut lines = vec![
        hostname.to_owned(),
        "PIPELINING".to_owned(),
        "8BITMIME".to_owned(),
        "SMTPUTF8".to_owned(),
    ];
    lines.push(if max_size == 0 {
        "SIZE".to_owned()
    } else {
        format!("SIZE {max_size}")
    });
    lines.push("ENHANCEDSTATUSCODES".to_owned());
    lines.push("CHUNKING".to_owned());
    lines.push("DSN".to_owned());
    if starttls {
        lines.push("STARTTLS".to_owned());
    }
    if auth {
        lines.push("AUTH PLAIN LOGIN".to_owned());
    }
    composed(250, None, &lines.join("\n"))
}

/// `250 <hostname>` (HELO).
pub(crate) fn helo(hostname: &str) -> Reply {
    composed(250, None, hostname)
}

pub(crate) fn ok() -> Reply {
    Reply::fixed(250, (2, 0, 0), "Ok")
}

pub(crate) fn mail_ok() -> Reply {
    Reply::fixed(250, (2, 1, 0), "Ok")
}

pub(crate) fn rcpt_ok() -> Reply {
    Reply::fixed(250, (2, 1, 5), "Ok")
}

/// The default final reply when a driver `accept()`s a MessageEnd instead of replying.
pub(crate) fn message_ok() -> Reply {
    Reply::fixed(250, (2, 0, 0), "Ok: queued")
}

pub(crate) fn start_data() -> Reply {
    composed(354, None, "End data with <CR><LF>.<CR><LF>")
}

/// `250 2.0.0 <n> octets received` (a non-LAST BDAT chunk).
pub(crate) fn chunk_ok(octets: u64) -> Reply {
    composed(250, Some((2, 0, 0)), &format!("{octets} octets received"))
}

pub(crate) fn bye() -> Reply {
    Reply::fixed(221, (2, 0, 0), "Bye")
}

pub(crate) fn vrfy() -> Reply {
    Reply::fixed(
        252,
        (2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

pub(crate) fn help() -> Reply {
    Reply::fixed(
        214,
        (2, 0, 0),
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
    )
}

pub(crate) fn expn() -> Reply {
    Reply::fixed(502, (5, 5, 1), "EXPN not available")
}

pub(crate) fn ready_for_tls() -> Reply {
    Reply::fixed(220, (2, 0, 0), "Ready to start TLS")
}

pub(crate) fn authenticated() -> Reply {
    Reply::fixed(235, (2, 7, 0), "Authentication successful")
}

/// `334 ` followed by the challenge (base64, [`crate::sasl::Challenge::base64`]; empty for PLAIN
/// without an initial response).
pub(crate) fn challenge(text: &str) -> Reply {
    composed(334, None, text)
}

// Refusals.

pub(crate) fn not_recognized() -> Reply {
    Reply::fixed(500, (5, 5, 2), "Command not recognized")
}

pub(crate) fn line_too_long() -> Reply {
    Reply::fixed(500, (5, 5, 2), "Line too long")
}

/// `501 5.5.4 Syntax: <usage>`.
pub(crate) fn syntax(usage: &str) -> Reply {
    composed(501, Some((5, 5, 4)), &format!("Syntax: {usage}"))
}

/// `501 5.5.4 <what>` for a malformed parameter value.
pub(crate) fn bad_value(what: &str) -> Reply {
    composed(501, Some((5, 5, 4)), what)
}

/// `503 5.5.1 <why>`.
pub(crate) fn bad_sequence(why: &str) -> Reply {
    composed(503, Some((5, 5, 1)), why)
}

pub(crate) fn bad_sender(reason: &dyn std::fmt::Display) -> Reply {
    composed(
        501,
        Some((5, 1, 7)),
        &format!("Bad sender address syntax: {reason}"),
    )
}

pub(crate) fn bad_recipient(reason: &dyn std::fmt::Display) -> Reply {
    composed(
        501,
        Some((5, 1, 3)),
        &format!("Bad recipient address syntax: {reason}"),
    )
}

/// `555 5.5.4 <why>`: an unknown, unsupported or repeated ESMTP parameter.
pub(crate) fn bad_parameter(why: &str) -> Reply {
    composed(555, Some((5, 5, 4)), why)
}

pub(crate) fn smtputf8_required() -> Reply {
    Reply::fixed(
        553,
        (5, 6, 7),
        "Non-ASCII address requires the SMTPUTF8 parameter",
    )
}

pub(crate) fn too_big() -> Reply {
    Reply::fixed(
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

pub(crate) fn bare_line_end() -> Reply {
    Reply::fixed(
        550,
        (5, 6, 11),
        "Bare CR or LF not allowed (RFC 5321 2.3.8)",
    )
}

pub(crate) fn no_valid_recipients() -> Reply {
    Reply::fixed(554, (5, 5, 1), "No valid recipients")
}

pub(crate) fn too_many_recipients() -> Reply {
    Reply::fixed(452, (4, 5, 3), "Too many recipients")
}

pub(crate) fn auth_required() -> Reply {
    Reply::fixed(530, (5, 7, 0), "Authentication required")
}

pub(crate) fn not_available(what: &str) -> Reply {
    composed(502, Some((5, 5, 1)), &format!("{what} not available"))
}

pub(crate) fn encryption_required() -> Reply {
    Reply::fixed(
        538,
        (5, 7, 11),
        "Encryption required for requested authentication mechanism",
    )
}

pub(crate) fn unknown_mechanism() -> Reply {
    Reply::fixed(504, (5, 5, 4), "Unrecognized authentication mechanism")
}

pub(crate) fn auth_cancelled() -> Reply {
    Reply::fixed(501, (5, 0, 0), "Authentication cancelled")
}

/// `501 5.5.2 <why>`: an undecodable SASL response.
pub(crate) fn bad_auth_response(why: &str) -> Reply {
    composed(501, Some((5, 5, 2)), why)
}

/// `421 4.7.0 <hostname> <why>, closing connection`.
pub(crate) fn closing(hostname: &str, why: &str) -> Reply {
    composed(
        421,
        Some((4, 7, 0)),
        &format!("{hostname} {why}, closing connection"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_fixed_reply_is_valid_and_carries_an_enhanced_code() {
        let with_code = [
            ok(),
            mail_ok(),
            rcpt_ok(),
            message_ok(),
            chunk_ok(u64::MAX),
            bye(),
            vrfy(),
            help(),
            expn(),
            ready_for_tls(),
            authenticated(),
            not_recognized(),
            line_too_long(),
            syntax("MAIL FROM:<address>"),
            bad_value("x"),
            bad_sequence("x"),
            bad_sender(&"x"),
            bad_recipient(&"x"),
            bad_parameter("x"),
            smtputf8_required(),
            too_big(),
            bare_line_end(),
            no_valid_recipients(),
            too_many_recipients(),
            auth_required(),
            not_available("x"),
            encryption_required(),
            unknown_mechanism(),
            auth_cancelled(),
            bad_auth_response("x"),
            closing("mx.example", "Too many errors"),
        ];
        for r in with_code {
            let e = r.enhanced().expect("enhanced code");
            assert_eq!(u16::from(e.class), r.code() / 100, "{r}");
        }
        for r in [
            greeting("mx"),
            ehlo("mx", 1, true, true),
            helo("mx"),
            start_data(),
            challenge(""),
        ] {
            assert_eq!(r.enhanced(), None);
        }
    }

    #[test]
    fn wire_forms() {
        assert_eq!(
            wire(&greeting("mx.example")),
            "220 mx.example ESMTP wasmail\r\n"
        );
        assert_eq!(wire(&challenge("")), "334 \r\n");
        assert_eq!(
            wire(&challenge(crate::sasl::Challenge::Username.base64())),
            "334 VXNlcm5hbWU6\r\n"
        );
        assert_eq!(
            wire(&start_data()),
            "354 End data with <CR><LF>.<CR><LF>\r\n"
        );
        assert_eq!(wire(&chunk_ok(12)), "250 2.0.0 12 octets received\r\n");
        assert_eq!(
            wire(&closing("mx", "Too many errors")),
            "421 4.7.0 mx Too many errors, closing connection\r\n"
        );
        assert_eq!(
            wire(&ehlo("mx", 0, false, false)),
            "250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 DSN\r\n"
        );
        assert_eq!(
            wire(&ehlo("mx", 1000, true, true)),
            "250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE 1000\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n250-STARTTLS\r\n\
             250 AUTH PLAIN LOGIN\r\n"
        );
    }
}
