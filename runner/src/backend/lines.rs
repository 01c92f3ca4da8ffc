//! Peer output arrives in chunks that may split lines anywhere; the runner wants lines.

/// Reassembles lines from chunks that may split them anywhere.
#[derive(Default)]
pub struct LineBuffer(Vec<u8>);

impl LineBuffer {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.0.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=pos).collect();
            lines.push(
                String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_owned(),
            );
        }
        lines
    }

    pub fn finish(&mut self) -> Option<String> {
        (!self.0.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.0)).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_any_chunking() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"{\"a\":").is_empty());
        assert_eq!(b.push(b"1}\n{\"b\"").as_slice(), ["{\"a\":1}"]);
        assert_eq!(b.push(b":2}\r\nx\ny").as_slice(), ["{\"b\":2}", "x"]);
        assert_eq!(b.finish().as_deref(), Some("y"));
        assert_eq!(b.finish(), None);
    }
}
