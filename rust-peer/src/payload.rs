//! The message payload every implementation publishes: a one-line JSON header, `\n`, then
//! `.` padding up to the requested size, so any receiver can identify a message and compute
//! its delivery latency without knowing who published it.

use std::fmt;

use serde::{Deserialize, Serialize};

const PADDING: u8 = b'.';

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub id: String,
    /// Publish time, Unix microseconds.
    pub sent_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(String);

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid payload header: {}", self.0)
    }
}

impl std::error::Error for PayloadError {}

/// Builds a payload of `size` bytes, or of just the header and newline when `size` is smaller.
pub fn encode(header: &Header, size: usize) -> Vec<u8> {
    let mut payload =
        serde_json::to_vec(header).expect("a struct of a string and an integer serializes");
    payload.push(b'\n');
    let padding = size.saturating_sub(payload.len());
    payload.resize(payload.len() + padding, PADDING);
    payload
}

/// Parses the header: the JSON object before the first `\n`.
pub fn decode(payload: &[u8]) -> Result<Header, PayloadError> {
    let end = payload
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| PayloadError("no newline after the header".into()))?;
    serde_json::from_slice(&payload[..end]).map_err(|e| PayloadError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            id: "rust-1/0".into(),
            sent_us: 1763701200990000,
        }
    }

    #[test]
    fn encodes_compact_header_then_padding() {
        let payload = encode(&header(), 64);
        let text = r#"{"id":"rust-1/0","sent_us":1763701200990000}"#;
        assert_eq!(payload.len(), 64);
        assert_eq!(&payload[..text.len()], text.as_bytes());
        assert_eq!(payload[text.len()], b'\n');
        assert!(payload[text.len() + 1..].iter().all(|&b| b == b'.'));
    }

    #[test]
    fn small_sizes_give_header_and_newline_only() {
        let exact = encode(&header(), 0);
        assert_eq!(exact.last(), Some(&b'\n'));
        assert_eq!(encode(&header(), exact.len()), exact);
        assert_eq!(encode(&header(), exact.len() + 1).len(), exact.len() + 1);
    }

    #[test]
    fn round_trips() {
        for size in [0, 10, 47, 256, 65536] {
            assert_eq!(
                decode(&encode(&header(), size)),
                Ok(header()),
                "size {size}"
            );
        }
    }

    #[test]
    fn decodes_foreign_headers_with_extra_fields_and_any_padding() {
        let payload = b"{\"sent_us\":5,\"id\":\"go-1/3\",\"x\":1}\nabc\n{";
        let parsed = decode(payload).expect("valid header");
        assert_eq!(parsed.id, "go-1/3");
        assert_eq!(parsed.sent_us, 5);
    }

    #[test]
    fn rejects_payloads_without_a_valid_header() {
        assert!(decode(b"").is_err());
        assert!(
            decode(b"{\"id\":\"a\",\"sent_us\":1}").is_err(),
            "no newline"
        );
        assert!(decode(b"hello\n....").is_err());
        assert!(decode(b"{\"id\":\"a\"}\n").is_err(), "missing sent_us");
        assert!(
            decode(b"{\"id\":1,\"sent_us\":1}\n").is_err(),
            "id not a string"
        );
    }
}
