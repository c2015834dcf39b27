//! Several IMAP sessions on one mailbox, driven at random, each checked against the model of
//! RFC 3501's sequence-number rules: a session's numbers change only through the untagged
//! EXPUNGE and EXISTS it was sent (2.3.1.2, 7.4.1), never by an EXPUNGE during FETCH, STORE or
//! SEARCH by sequence number, and at every point `FETCH 1:* (UID)` must list exactly the UIDs
//! the session's own bookkeeping says it has. At the end, after a NOOP, every session's list is
//! the store's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wasmail_e2e::imap::{Imap, Reply};
use wasmail_e2e::smtp::{ALICE, ALICE_PW, start};

/// One session and what it has been told: `uids[n - 1]` is the UID of message n, `None`
/// until a FETCH named it.
struct Tracked {
    imap: Imap,
    uids: Vec<Option<u32>>,
}

impl Tracked {
    /// Applies a reply's untagged responses in order; `expunge_allowed`: the command may carry
    /// EXPUNGE responses.
    fn apply(&mut self, r: &Reply, expunge_allowed: bool) {
        for response in &r.untagged {
            if response.is("EXPUNGE") {
                assert!(expunge_allowed, "EXPUNGE during {}: {r:?}", r.command);
                let n = response.number() as usize;
                assert!(
                    n >= 1 && n <= self.uids.len(),
                    "EXPUNGE {n} of {}",
                    self.uids.len()
                );
                self.uids.remove(n - 1);
            } else if response.is("EXISTS") {
                let n = response.number() as usize;
                assert!(
                    n >= self.uids.len(),
                    "EXISTS may not shrink: {n} < {}",
                    self.uids.len()
                );
                self.uids.resize(n, None);
            } else if response.is("FETCH") {
                let n = response.number() as usize;
                assert!(
                    n >= 1 && n <= self.uids.len(),
                    "FETCH {n} of {}",
                    self.uids.len()
                );
                let fetch = wasmail_e2e::imap::Fetch::from(response);
                if fetch.has("UID") {
                    let uid = fetch.uid();
                    match self.uids[n - 1] {
                        Some(known) => assert_eq!(known, uid, "message {n} changed its UID"),
                        None => self.uids[n - 1] = Some(uid),
                    }
                }
            }
        }
    }

    fn run(&mut self, command: &str, expunge_allowed: bool) -> Reply {
        let r = self.imap.cmd(command);
        assert_eq!(r.status(), "OK", "{r:?}");
        self.apply(&r, expunge_allowed);
        r
    }

    /// `FETCH 1:* (UID)` answers every message the session has with the UID it knows — except
    /// messages another session expunged meanwhile, for which the FETCH may end in
    /// `NO [EXPUNGEISSUED]` (RFC 2180 4.1.2); `complete`: nothing can be pending (after NOOP).
    fn check(&mut self, complete: bool) {
        if self.uids.is_empty() {
            return;
        }
        let before = self.uids.len();
        let r = self.imap.cmd("FETCH 1:* (UID)");
        self.apply(&r, false);
        // Messages that arrived meanwhile (EXISTS at the end) were not asked for.
        let fetched: std::collections::BTreeSet<u64> = r
            .untagged
            .iter()
            .filter(|u| u.is("FETCH"))
            .map(|u| u.number())
            .collect();
        if r.status() == "NO" && !complete {
            assert_eq!(r.code().as_deref(), Some("EXPUNGEISSUED"), "{r:?}");
            assert!(fetched.len() < before, "{r:?}");
            return;
        }
        assert_eq!(r.status(), "OK", "{r:?}");
        assert_eq!(fetched, (1..=before as u64).collect(), "{r:?}");
        assert!(self.uids[..before].iter().all(Option::is_some), "{r:?}");
    }
}

/// A small deterministic generator (the run is the same every time).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn random_commands_from_three_sessions_keep_every_sessions_numbers_right() {
    let server = start();
    let mut sessions: Vec<Tracked> = (0..3)
        .map(|_| {
            let mut imap = Imap::login_to(&server, ALICE, ALICE_PW);
            let r = imap.cmd("SELECT INBOX");
            assert_eq!(r.status(), "OK", "{r:?}");
            Tracked {
                imap,
                uids: Vec::new(),
            }
        })
        .collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for step in 0..400 {
        let s = &mut sessions[rng.below(3) as usize];
        let count = s.uids.len() as u64;
        match rng.below(10) {
            0..=2 => {
                let message = format!("Subject: step {step}\r\n\r\nbody {step}\r\n");
                let r = s.imap.append("INBOX", "", message.as_bytes());
                assert_eq!(r.status(), "OK", "{r:?}");
                s.apply(&r, true);
            }
            3 | 4 if count > 0 => {
                let seq = 1 + rng.below(count);
                s.run(&format!("STORE {seq} +FLAGS (\\Deleted)"), false);
            }
            5 if count > 0 => {
                let seq = 1 + rng.below(count);
                s.run(&format!("UID STORE {seq}:* -FLAGS (\\Deleted)"), true);
            }
            6 => {
                s.run("EXPUNGE", true);
            }
            7 => {
                s.run("SEARCH DELETED", false);
            }
            8 => {
                s.run("NOOP", true);
            }
            _ => s.check(false),
        }
    }
    // Everyone catches up: each session's list is now the store's.
    let stored: Vec<u32> = server
        .metas(ALICE, "INBOX")
        .iter()
        .map(|m| m.uid.get())
        .collect();
    for s in &mut sessions {
        s.run("NOOP", true);
        s.check(true);
        let known: Vec<u32> = s.uids.iter().map(|u| u.expect("known")).collect();
        assert_eq!(known, stored);
    }
}
