//! Sequence sets (RFC 3501 9 `sequence-set`) resolved against the selected mailbox: message
//! sequence numbers for FETCH, STORE, COPY, MOVE and SEARCH, UIDs for their UID forms.
//!
//! A set is resolved to *positions* in the session's message list (0-based, ascending, without
//! duplicates), so a caller gets `seq = position + 1` and `uid = uids[position]` from one answer.
//!
//! Cost: a set is first turned into its merged ranges (as many as the set has items, however
//! large the ranges), and then either expanded over the message count (bounded by the mailbox)
//! or walked over the existing UIDs by binary search. So `1:4294967295` costs what the mailbox
//! holds, never four billion steps, and a membership test ([`contains_message`],
//! [`contains_uid`]) allocates nothing.

use std::fmt;

use wasmail_types::mail::Uid;

use crate::imap::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// A sequence set named a message sequence number the mailbox does not have. RFC 3501 6.4.8
/// lets only UID ranges name absent messages; for sequence numbers the caller answers `BAD`
/// (with this as the reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSuchMessage {
    /// The largest number the set named.
    pub number: u32,
    /// How many messages the session sees.
    pub message_count: u32,
}

impl fmt::Display for NoSuchMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message_count {
            0 => write!(f, "no message {}: the mailbox is empty", self.number),
            1 => write!(f, "no message {}: the mailbox has 1 message", self.number),
            n => write!(
                f,
                "no message {}: the mailbox has {n} messages",
                self.number
            ),
        }
    }
}

impl std::error::Error for NoSuchMessage {}

/// The positions of the messages `set` names by sequence number, in a session that sees
/// `message_count` messages.
///
/// `*` is `message_count` (RFC 3501 9: "the largest number in use"). On an empty mailbox `*`
/// stands for no number, so an item containing it (`*`, `1:*`) names nothing, where an explicit
/// number (`1`) is an error. A reversed range (`5:2`) is the same as `2:5`.
pub fn message_positions(
    set: &SequenceSet,
    message_count: u32,
) -> Result<Vec<usize>, NoSuchMessage> {
    let star = (message_count > 0).then_some(message_count);
    let ranges = merged_ranges(set, star);
    if let Some(&(_, highest)) = ranges.last()
        && highest > message_count
    {
        return Err(NoSuchMessage {
            number: highest,
            message_count,
        });
    }
    // Every range is now within 1..=message_count, so this allocates at most one entry per
    // message of the mailbox.
    Ok(ranges
        .into_iter()
        .flat_map(|(low, high)| position(low)..=position(high))
        .collect())
}

/// The positions of the messages `set` names by UID, given the session's UIDs in ascending
/// order.
///
/// UID sets never fail (RFC 3501 6.4.8: "a non-existent unique identifier is ignored"): absent
/// UIDs name nothing, and so does any set on an empty mailbox. `*` is the highest UID present,
/// so `n:*` with `n` above every UID still names the last message (6.4.8's example: `UID FETCH
/// 100:*` when the highest UID is 50).
pub fn uid_positions(set: &SequenceSet, uids: &[Uid]) -> Vec<usize> {
    debug_assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "UIDs must be strictly ascending"
    );
    let star = uids.last().map(|uid| uid.get());
    let mut positions = Vec::new();
    // Ranges are sorted and disjoint, so each search starts where the previous one ended.
    let mut from = 0;
    for (low, high) in merged_ranges(set, star) {
        let first = from + uids[from..].partition_point(|uid| uid.get() < low);
        let end = first + uids[first..].partition_point(|uid| uid.get() <= high);
        positions.extend(first..end);
        from = end;
    }
    positions
}

/// Whether `set` names message sequence number `seq` in a session that sees `message_count`
/// messages (`*` as in [`message_positions`]; numbers beyond the count simply never match).
pub fn contains_message(set: &SequenceSet, seq: u32, message_count: u32) -> bool {
    let star = (message_count > 0).then_some(message_count);
    contains(set, seq, star)
}

/// Whether `set` names `uid`, where `highest` is the highest UID in the mailbox (what `*`
/// stands for; `None` when the mailbox is empty).
pub fn contains_uid(set: &SequenceSet, uid: Uid, highest: Option<Uid>) -> bool {
    contains(set, uid.get(), highest.map(Uid::get))
}

fn contains(set: &SequenceSet, value: u32, star: Option<u32>) -> bool {
    set.0
        .as_ref()
        .iter()
        .filter_map(|sequence| bounds(sequence, star))
        .any(|(low, high)| (low..=high).contains(&value))
}

/// The position of sequence number `seq` (which is at least 1: `SeqOrUid` holds a
/// `NonZeroU32`).
fn position(seq: u32) -> usize {
    seq as usize - 1
}

/// The inclusive range one item of a set names, low end first, with `*` replaced by `star`;
/// `None` when the item uses `*` and `star` stands for nothing (an empty mailbox).
fn bounds(sequence: &Sequence, star: Option<u32>) -> Option<(u32, u32)> {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => Some(n.get()),
        SeqOrUid::Asterisk => star,
    };
    match sequence {
        Sequence::Single(a) => value(a).map(|a| (a, a)),
        Sequence::Range(a, b) => {
            let (a, b) = (value(a)?, value(b)?);
            Some((a.min(b), a.max(b)))
        }
    }
}

/// The ranges of `set` sorted by their low end, with overlapping and adjacent ranges merged:
/// disjoint, ascending, and at most one per item of the set.
fn merged_ranges(set: &SequenceSet, star: Option<u32>) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = set
        .0
        .as_ref()
        .iter()
        .filter_map(|sequence| bounds(sequence, star))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match merged.last_mut() {
            Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::Xorshift64;

    fn set(s: &str) -> SequenceSet {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
    }

    fn uids(values: &[u32]) -> Vec<Uid> {
        values.iter().map(|&v| Uid::new(v).unwrap()).collect()
    }

    #[test]
    fn message_numbers() {
        // (set, message count, positions)
        let cases: &[(&str, u32, &[usize])] = &[
            ("1", 5, &[0]),
            ("*", 5, &[4]),
            ("1:*", 5, &[0, 1, 2, 3, 4]),
            ("*:1", 5, &[0, 1, 2, 3, 4]),
            ("2:4", 5, &[1, 2, 3]),
            ("5:2", 5, &[1, 2, 3, 4]),
            ("4:*", 5, &[3, 4]),
            ("*:4", 5, &[3, 4]),
            ("*:*", 5, &[4]),
            // Duplicates and overlaps are named once, in ascending order.
            ("3,1,3,2:3,1", 5, &[0, 1, 2]),
            ("1:2,2:3,5", 5, &[0, 1, 2, 4]),
            ("4,1:2", 5, &[0, 1, 3]),
            // RFC 3501 9's example: 2,4:7,9,12:* with 15 messages.
            ("2,4:7,9,12:*", 15, &[1, 3, 4, 5, 6, 8, 11, 12, 13, 14]),
            // An empty mailbox: `*` names nothing.
            ("*", 0, &[]),
            ("1:*", 0, &[]),
            ("*:1", 0, &[]),
        ];
        for &(s, count, expected) in cases {
            assert_eq!(
                message_positions(&set(s), count),
                Ok(expected.to_vec()),
                "{s} with {count} messages"
            );
        }
    }

    #[test]
    fn message_numbers_beyond_the_count_are_errors() {
        let cases: &[(&str, u32, u32)] = &[
            ("6", 5, 6),
            ("1:6", 5, 6),
            ("6:*", 5, 6),
            ("1,7,3", 5, 7),
            ("1", 0, 1),
            ("1,*", 0, 1),
            ("4294967295", 5, u32::MAX),
        ];
        for &(s, count, number) in cases {
            assert_eq!(
                message_positions(&set(s), count),
                Err(NoSuchMessage {
                    number,
                    message_count: count
                }),
                "{s} with {count} messages"
            );
        }
        assert_eq!(
            NoSuchMessage {
                number: 7,
                message_count: 5
            }
            .to_string(),
            "no message 7: the mailbox has 5 messages"
        );
        assert_eq!(
            NoSuchMessage {
                number: 1,
                message_count: 0
            }
            .to_string(),
            "no message 1: the mailbox is empty"
        );
    }

    #[test]
    fn uid_sets() {
        let mailbox = uids(&[3, 7, 8, 20, 50]);
        let cases: &[(&str, &[usize])] = &[
            ("1:*", &[0, 1, 2, 3, 4]),
            ("1:4294967295", &[0, 1, 2, 3, 4]),
            ("*", &[4]),
            ("7", &[1]),
            ("4", &[]),
            ("4:6", &[]),
            ("4:7", &[1]),
            ("8:4", &[1, 2]),
            ("20:*", &[3, 4]),
            // RFC 3501 6.4.8: `n:*` above the highest UID still names the highest message.
            ("100:*", &[4]),
            ("*:100", &[4]),
            ("51:100", &[]),
            ("3,50,7,3:3", &[0, 1, 4]),
            ("1:3,8:20,49:51", &[0, 2, 3, 4]),
        ];
        for &(s, expected) in cases {
            assert_eq!(uid_positions(&set(s), &mailbox), expected, "{s}");
        }
        // An empty mailbox: every UID set names nothing, and none is an error.
        for s in ["1:*", "*", "1", "100:*", "1:4294967295"] {
            assert_eq!(uid_positions(&set(s), &[]), Vec::<usize>::new(), "{s}");
        }
    }

    #[test]
    fn membership_agrees_with_resolution() {
        let mailbox = uids(&[2, 3, 5, 8, 13, 21]);
        let count = mailbox.len() as u32;
        for s in [
            "1", "*", "1:*", "3:1", "2,4:5", "*:4", "13:*", "100:*", "4:4,6", "9:12",
        ] {
            let set = set(s);
            let highest = mailbox.last().copied();
            let by_uid: Vec<usize> = (0..mailbox.len())
                .filter(|&p| contains_uid(&set, mailbox[p], highest))
                .collect();
            assert_eq!(by_uid, uid_positions(&set, &mailbox), "UID {s}");
            if let Ok(positions) = message_positions(&set, count) {
                let by_seq: Vec<usize> = (0..mailbox.len())
                    .filter(|&p| contains_message(&set, p as u32 + 1, count))
                    .collect();
                assert_eq!(by_seq, positions, "seq {s}");
            }
        }
        assert!(!contains_message(&set("*"), 1, 0));
        assert!(!contains_uid(&set("*"), Uid::MIN, None));
    }

    #[test]
    fn huge_ranges_cost_what_the_mailbox_holds() {
        // 100,000 messages with sparse UIDs; each call would take minutes if it stepped through
        // the values of the ranges.
        let mailbox: Vec<Uid> = (1..=100_000u32)
            .map(|i| Uid::new(i * 40_000).unwrap())
            .collect();
        let all: Vec<usize> = (0..mailbox.len()).collect();
        assert_eq!(uid_positions(&set("1:4294967295"), &mailbox), all);
        assert_eq!(uid_positions(&set("1:*"), &mailbox), all);
        assert_eq!(
            uid_positions(&set("1:39999,4000000001:4294967295"), &mailbox),
            Vec::<usize>::new()
        );
        assert_eq!(message_positions(&set("1:*"), 100_000), Ok(all));
        assert!(message_positions(&set("1:4294967295"), 100_000).is_err());
    }

    #[test]
    fn random_sets_match_a_naive_model() {
        let mut rng = Xorshift64::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            // A mailbox of up to 20 messages with UIDs in 1..=60.
            let mut values: Vec<u32> = (0..rng.below(21))
                .map(|_| rng.below(60) as u32 + 1)
                .collect();
            values.sort_unstable();
            values.dedup();
            let mailbox = uids(&values);
            let count = mailbox.len() as u32;
            // A set of 1 to 4 items over 1..=70 and `*`.
            let value = |rng: &mut Xorshift64| match rng.below(8) {
                0 => "*".to_owned(),
                _ => (rng.below(70) + 1).to_string(),
            };
            let items: Vec<String> = (0..rng.below(4) + 1)
                .map(|_| match rng.below(2) {
                    0 => value(&mut rng),
                    _ => format!("{}:{}", value(&mut rng), value(&mut rng)),
                })
                .collect();
            let text = items.join(",");
            let set = set(&text);

            // The model: `*` is the largest value in use; a range is every value between its
            // ends; an item with `*` on an empty mailbox names nothing.
            let named = |star: Option<u32>, v: u32| {
                items.iter().any(|item| {
                    let ends: Option<Vec<u32>> = item
                        .split(':')
                        .map(|e| if e == "*" { star } else { e.parse().ok() })
                        .collect();
                    ends.is_some_and(|ends| {
                        let (lo, hi) = (
                            ends[0].min(ends[ends.len() - 1]),
                            ends[0].max(ends[ends.len() - 1]),
                        );
                        (lo..=hi).contains(&v)
                    })
                })
            };
            let by_uid: Vec<usize> = (0..mailbox.len())
                .filter(|&p| named(values.last().copied(), values[p]))
                .collect();
            assert_eq!(
                uid_positions(&set, &mailbox),
                by_uid,
                "UID {text} on {values:?}"
            );

            let star = (count > 0).then_some(count);
            let beyond = (count + 1..=70).any(|v| named(star, v));
            let by_seq: Vec<usize> = (0..mailbox.len())
                .filter(|&p| named(star, p as u32 + 1))
                .collect();
            match message_positions(&set, count) {
                Ok(positions) => {
                    assert!(!beyond, "{text} with {count} messages must fail");
                    assert_eq!(positions, by_seq, "{text} with {count} messages");
                }
                Err(e) => assert!(beyond, "{text} with {count} messages: {e}"),
            }
        }
    }
}
