//! A payload of any type, kept as its sender encoded it.

use busbar::{CodecError, MessageBox, TypeUuidBytes};

/// A payload the bridge passes on without decoding it: its type id and its
/// postcard bytes, exactly as the sending endpoint encoded them. As a
/// [`MessageBox`] it accepts every type id, so an endpoint of `Raw` receives
/// everything and sends anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// The payload's type id.
    pub type_uuid: TypeUuidBytes,
    /// The encoded payload.
    pub bytes: Vec<u8>,
}

impl MessageBox for Raw {
    fn type_uuid(&self) -> TypeUuidBytes {
        self.type_uuid
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&self.bytes);
        Ok(())
    }

    fn decode(type_uuid: TypeUuidBytes, bytes: &[u8]) -> Result<Option<Self>, CodecError> {
        Ok(Some(Raw {
            type_uuid,
            bytes: bytes.to_vec(),
        }))
    }
}
