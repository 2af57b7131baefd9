//! An incremental parser for server-sent events, fed the body's bytes as they arrive.
//!
//! Network chunks do not respect line boundaries, so bytes are buffered until a whole line is
//! there. Lines are split on `\n` and a trailing `\r` is dropped, which covers `\r\n` even when
//! the two bytes arrive in different chunks. Since `\n` never occurs inside a multi-byte UTF-8
//! sequence, decoding line by line never splits a character.

/// One dispatched event: its `event:` name, if any, and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// The `event:` field, when the server named the event.
    pub event: Option<String>,
    /// The `data:` field (several `data:` lines are joined with `\n`).
    pub data: String,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The event being assembled.
    event: Option<String>,
    /// The data lines seen so far for the event being assembled.
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one chunk of the body and returns the events it completed.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let line = std::mem::take(&mut self.partial);
            self.line(&line, &mut out);
        }
        self.partial.extend_from_slice(rest);
        out
    }

    /// Ends the body. An event whose lines all arrived whole is still delivered without its
    /// closing blank line, since some servers close the connection right after the last
    /// `data:` line; a last line without its newline was most likely cut off and is dropped.
    pub(crate) fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        self.partial.clear();
        self.dispatch(&mut out);
        out
    }

    /// Handles one complete line (without its `\n`).
    fn line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            self.dispatch(out);
            return;
        }
        if raw.starts_with(b":") {
            // A comment, often used as a keep-alive.
            return;
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            // `id:` and `retry:` matter for reconnecting browsers, not for one request.
            _ => {}
        }
    }

    /// Completes the event being assembled, if it has data.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.data.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        out.push(SseEvent { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend(parser.feed(c));
        }
        out.extend(parser.finish());
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn whole_events() {
        let mut p = SseParser::default();
        let got = feed_all(&mut p, &[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(got, vec![ev(None, "{\"a\":1}"), ev(None, "[DONE]")]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body = "event: message_start\r\ndata: {\"x\":\"h\u{e9}llo \u{1f600}\"}\r\n\r\n: keep-alive\n\n\nevent: ping\ndata: {}\n\ndata: a\ndata: b\n\n";
        let expected = vec![
            ev(Some("message_start"), "{\"x\":\"h\u{e9}llo \u{1f600}\"}"),
            ev(Some("ping"), "{}"),
            ev(None, "a\nb"),
        ];
        let bytes = body.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut p = SseParser::default();
                let got = feed_all(&mut p, &[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(got, expected, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let body = b"data: {\"choices\":[]}\r\n\r\ndata: [DONE]\r\n\r\n";
        let mut p = SseParser::default();
        let chunks: Vec<&[u8]> = body.chunks(1).collect();
        let got = feed_all(&mut p, &chunks);
        assert_eq!(got, vec![ev(None, "{\"choices\":[]}"), ev(None, "[DONE]")]);
    }

    #[test]
    fn comments_and_blank_keepalives_produce_nothing() {
        let mut p = SseParser::default();
        let got = feed_all(&mut p, &[b": ping\n\n\n\r\n:\n"]);
        assert!(got.is_empty());
    }

    #[test]
    fn no_space_after_colon_and_unterminated_last_event() {
        let mut p = SseParser::default();
        let got = feed_all(&mut p, &[b"event:done\ndata:[DONE]\n"]);
        assert_eq!(got, vec![ev(Some("done"), "[DONE]")]);
    }

    #[test]
    fn a_cut_off_last_line_is_dropped() {
        let mut p = SseParser::default();
        let got = feed_all(&mut p, &[b"data: {\"a\":1}\n\ndata: {\"type\":\"mess"]);
        assert_eq!(got, vec![ev(None, "{\"a\":1}")]);
    }

    #[test]
    fn an_event_name_without_data_is_dropped() {
        let mut p = SseParser::default();
        let got = feed_all(&mut p, &[b"event: ping\n\ndata: x\n\n"]);
        assert_eq!(got, vec![ev(None, "x")]);
    }
}
