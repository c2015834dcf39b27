//! A message's ENVELOPE and BODYSTRUCTURE, computed once from its octets and kept by the store
//! (`Mailbox::cached`), so `FETCH 1:* (ENVELOPE BODYSTRUCTURE)` on a large mailbox reads and
//! parses each message only the first time any session asks.
//!
//! Kept in IMAP wire form (`* 1 FETCH (ENVELOPE ... BODYSTRUCTURE ...)`), which imap-codec
//! decodes back; a structure it cannot decode (imap-codec stops at 8 nested bodies) is not kept
//! and is computed again when asked.

use std::num::NonZeroU32;

use imap_codec::ResponseCodec;
use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::body::{BodyStructure, SpecificFields};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::envelope::Envelope;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};

use super::mime::MimeMessage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Structure {
    pub envelope: Envelope<'static>,
    /// With every extension field (BODYSTRUCTURE); [`Structure::body`] gives BODY.
    pub body_structure: BodyStructure<'static>,
}

impl Structure {
    /// Parses the message.
    pub fn of(message: &[u8]) -> Structure {
        let parsed = MimeMessage::parse(message);
        Structure {
            envelope: parsed.envelope(),
            body_structure: parsed.body_structure(true),
        }
    }

    /// The structure as the store keeps it; None if it would not decode again.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let items = Vec1::try_from(vec![
            MessageDataItem::Envelope(self.envelope.clone()),
            MessageDataItem::BodyStructure(self.body_structure.clone()),
        ])
        .ok()?;
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items,
        });
        let bytes = ResponseCodec::default().encode(&response).dump();
        (Structure::from_bytes(&bytes).as_ref() == Some(self)).then_some(bytes)
    }

    /// A structure kept by [`Structure::to_bytes`]; None if the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Structure> {
        let (rest, response) = ResponseCodec::default().decode(bytes).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let Response::Data(Data::Fetch { items, .. }) = response else {
            return None;
        };
        let mut envelope = None;
        let mut body_structure = None;
        for item in items.into_iter() {
            match item {
                MessageDataItem::Envelope(e) => envelope = Some(e.into_static()),
                MessageDataItem::BodyStructure(b) => body_structure = Some(b.into_static()),
                _ => return None,
            }
        }
        Some(Structure {
            envelope: envelope?,
            body_structure: body_structure?,
        })
    }

    /// BODY: the structure without extension data (RFC 3501 7.4.2).
    pub fn body(&self) -> BodyStructure<'static> {
        without_extensions(&self.body_structure)
    }
}

fn without_extensions(structure: &BodyStructure<'static>) -> BodyStructure<'static> {
    match structure {
        BodyStructure::Single { body, .. } => {
            let mut body = body.clone();
            if let SpecificFields::Message { body_structure, .. } = &mut body.specific {
                **body_structure = without_extensions(body_structure);
            }
            BodyStructure::Single {
                body,
                extension_data: None,
            }
        }
        BodyStructure::Multi {
            bodies, subtype, ..
        } => BodyStructure::Multi {
            bodies: Vec1::unvalidated(bodies.as_ref().iter().map(without_extensions).collect()),
            subtype: subtype.clone(),
            extension_data: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_structures_come_back_the_same_and_body_is_bodystructure_without_extensions() {
        let message = b"From: A <a@example.com>\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n--b--\r\n";
        let s = Structure::of(message);
        let bytes = s.to_bytes().expect("decodable");
        assert_eq!(Structure::from_bytes(&bytes), Some(s.clone()));
        let parsed = MimeMessage::parse(message);
        assert_eq!(s.body(), parsed.body_structure(false));
        assert_eq!(Structure::from_bytes(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(Structure::from_bytes(b"garbage"), None);
    }
}
