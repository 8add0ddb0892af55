//! Incremental Server-Sent-Events parser for untrusted upstream bytes.
//!
//! Follows the WHATWG "event stream interpretation" rules:
//! * lines end with `\n`, `\r\n` or `\r` (a `\r\n` split across two chunks is
//!   one terminator); an event ends at a blank line;
//! * `data:` values are joined with `\n`; one space after the colon is removed;
//!   a line without a colon is a field name with an empty value;
//! * `event:` sets the name (an empty name is `None`); `id:`, `retry:` and
//!   unknown fields are ignored; a leading UTF-8 BOM of the stream is dropped.
//!
//! Choices made here:
//! * An event made only of comment lines (`:` ...) IS returned, with
//!   `event == None` and `data == ""`, so that a pass-through can forward
//!   keep-alives via `raw`. Consumers that parse `data` should skip events
//!   whose `data` is empty.
//! * Blocks with neither data, name nor comment (blank lines, `id:`-only) are
//!   not returned and their bytes are discarded.
//! * `raw` is the exact bytes from the event's first line through the
//!   terminator of its blank line. If that final terminator is a `\r\n` split
//!   across two `feed` calls, the event is returned as soon as the `\r`
//!   arrives (never delayed), so its `raw` ends in `\r` and the following
//!   `\n` belongs to no event. `raw` is still a complete, valid SSE event.
//! * Every line must be UTF-8 (`NotUtf8` otherwise). An event whose raw size
//!   exceeds `max_event_bytes` is `TooLarge`, detected as soon as the
//!   buffered part exceeds it. After an error the parser is reset; the
//!   caller should abandon the stream.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    /// The exact bytes of the event, including its terminating blank line.
    pub raw: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("event larger than {0} bytes")]
    TooLarge(usize),
    #[error("event is not UTF-8")]
    NotUtf8,
}

#[derive(Debug)]
pub struct SseParser {
    max: usize,
    /// Bytes of the unfinished event (from its first line on).
    buf: Vec<u8>,
    /// Start of the current, incomplete line in `buf`.
    line_start: usize,
    /// Where to resume searching for a line terminator in `buf`.
    search: usize,
    /// The last terminator was a `\r` at the end of the data seen so far.
    skip_lf: bool,
    bom_done: bool,
    fields: Fields,
}

/// Fields of the unfinished event parsed so far.
#[derive(Debug, Default)]
struct Fields {
    event: Option<String>,
    data: String,
    has_data: bool,
    has_comment: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max: max_event_bytes,
            buf: Vec::new(),
            line_start: 0,
            search: 0,
            skip_lf: false,
            bom_done: false,
            fields: Fields::default(),
        }
    }

    /// Bytes buffered of an unfinished event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The largest event accepted.
    pub fn max_event_bytes(&self) -> usize {
        self.max
    }

    /// Between two events, with nothing buffered and nothing left to skip:
    /// bytes fed now start a new event (or a blank line).
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && !self.skip_lf && self.bom_done
    }

    /// Settles, as `feed` would, that a stream has no byte-order mark when
    /// the first bytes it gets, `chunk`, cannot start one; the parser is
    /// then between events from the start.
    pub fn settle_bom(&mut self, chunk: &[u8]) {
        if !self.bom_done && self.buf.is_empty() && chunk.first().is_some_and(|&b| b != BOM[0]) {
            self.bom_done = true;
        }
    }

    /// Appends bytes; returns every event completed by them (possibly none), in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let r = self.feed_inner(chunk);
        if r.is_err() {
            *self = SseParser::new(self.max);
        }
        r
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        if !self.bom_done {
            let n = self.buf.len().min(BOM.len());
            if self.buf[..n] != BOM[..n] {
                self.bom_done = true;
            } else if n == BOM.len() {
                self.buf.drain(..n);
                self.bom_done = true;
            } else {
                return Ok(out); // could still become a BOM
            }
        }
        // Start of the unfinished event within `buf`.
        let mut ev_start = 0;
        loop {
            if self.skip_lf && self.line_start < self.buf.len() {
                self.skip_lf = false;
                if self.buf[self.line_start] == b'\n' {
                    if ev_start == self.line_start {
                        ev_start += 1; // tail of an already-dispatched event's CRLF
                    }
                    self.line_start += 1;
                    self.search = self.line_start;
                }
            }
            let rel = self.buf[self.search..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            let Some(rel) = rel else {
                self.search = self.buf.len();
                break;
            };
            let pos = self.search + rel;
            let mut next = pos + 1;
            if self.buf[pos] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let (ls, le) = (self.line_start, pos);
            self.line_start = next;
            self.search = next;
            if ls == le {
                let fields = std::mem::take(&mut self.fields);
                if let Some(ev) = fields.dispatch(&self.buf[ev_start..next], self.max)? {
                    out.push(ev);
                }
                ev_start = next;
            } else {
                let line = std::str::from_utf8(&self.buf[ls..le]).map_err(|_| SseError::NotUtf8)?;
                self.fields.line(line);
                if next - ev_start > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
        }
        self.buf.drain(..ev_start);
        self.line_start -= ev_start;
        self.search -= ev_start;
        if self.buf.len() > self.max {
            return Err(SseError::TooLarge(self.max));
        }
        Ok(out)
    }
}

impl Fields {
    fn line(&mut self, line: &str) {
        if line.starts_with(':') {
            self.has_comment = true;
            return;
        }
        let (name, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match name {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = (!value.is_empty()).then(|| value.to_owned()),
            _ => {} // id, retry and unknown fields
        }
    }

    fn dispatch(self, raw: &[u8], max: usize) -> Result<Option<SseEvent>, SseError> {
        if !(self.has_data || self.has_comment || self.event.is_some()) {
            return Ok(None);
        }
        if raw.len() > max {
            return Err(SseError::TooLarge(max));
        }
        let (event, data) = (self.event, self.data);
        Ok(Some(SseEvent {
            event,
            data,
            raw: raw.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> Vec<SseEvent> {
        SseParser::new(1 << 20).feed(input).unwrap()
    }

    fn ev(event: Option<&str>, data: &str, raw: &str) -> SseEvent {
        SseEvent {
            event: event.map(Into::into),
            data: data.into(),
            raw: raw.as_bytes().to_vec(),
        }
    }

    /// `raw` may lose the LF of a CRLF split right after the event's final CR.
    fn same(a: &[SseEvent], b: &[SseEvent]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                let trim = |r: &[u8]| r.strip_suffix(b"\r\n").map(|s| [s, b"\r"].concat());
                x.event == y.event
                    && x.data == y.data
                    && (x.raw == y.raw || trim(&x.raw).unwrap_or(x.raw.clone()) == y.raw)
            })
    }

    const STREAM: &str = "event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\n\
        data: line1\r\ndata:line2\r\n\r\nid: 7\nretry: 10\n\n\n\
        event: ping\r\rdata\rdata:  two spaces\r\r: c\ndata: x\nunknown: y\n\n";

    #[test]
    fn parses_spec_cases() {
        let got = whole(STREAM.as_bytes());
        let want = vec![
            ev(
                Some("message_start"),
                "{\"a\":1}",
                "event: message_start\ndata: {\"a\":1}\n\n",
            ),
            ev(None, "", ": keep-alive\n\n"),
            ev(None, "line1\nline2", "data: line1\r\ndata:line2\r\n\r\n"),
            ev(Some("ping"), "", "event: ping\r\r"),
            ev(None, "\n two spaces", "data\rdata:  two spaces\r\r"),
            ev(None, "x", ": c\ndata: x\nunknown: y\n\n"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn every_split_gives_same_events() {
        let crlf = STREAM.replace('\n', "\r\n").replace("\r\r\n", "\r\n");
        for input in [
            STREAM.to_string(),
            crlf,
            "\u{feff}data: é😀\n\n".to_string(),
        ] {
            let input = input.as_bytes();
            let want = whole(input);
            assert!(!want.is_empty());
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let mut p = SseParser::new(1 << 20);
                    let mut got = p.feed(&input[..i]).unwrap();
                    got.extend(p.feed(&input[i..j]).unwrap());
                    got.extend(p.feed(&input[j..]).unwrap());
                    assert!(same(&want, &got), "split at {i},{j}");
                    assert_eq!(p.pending(), 0);
                }
            }
            let mut p = SseParser::new(1 << 20);
            let got: Vec<_> = input.iter().flat_map(|b| p.feed(&[*b]).unwrap()).collect();
            assert!(same(&want, &got));
        }
    }

    #[test]
    fn split_crlf_between_events() {
        let mut p = SseParser::new(100);
        let a = p.feed(b"data: a\r\n\r").unwrap();
        assert_eq!(a, vec![ev(None, "a", "data: a\r\n\r")]);
        let b = p.feed(b"\ndata: b\r\n\r\n").unwrap();
        assert_eq!(b, vec![ev(None, "b", "data: b\r\n\r\n")]);
        // A lone CR inside an event followed later by LF is one terminator.
        let c = p.feed(b"data: c\r").unwrap();
        assert!(c.is_empty());
        let c = p.feed(b"\n\n").unwrap();
        assert_eq!(c, vec![ev(None, "c", "data: c\r\n\n")]);
    }

    #[test]
    fn pending_and_incomplete() {
        let mut p = SseParser::new(100);
        assert!(p.feed(b"data: abc").unwrap().is_empty());
        assert_eq!(p.pending(), 9);
        assert!(p.feed(b"\n").unwrap().is_empty());
        assert_eq!(p.pending(), 10);
        assert_eq!(p.feed(b"\n").unwrap().len(), 1);
        assert_eq!(p.pending(), 0);
        // Leading blank lines are discarded, not buffered.
        assert!(p.feed(b"\n\r\n\r\n").unwrap().is_empty());
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn too_large_never_grows() {
        let mut p = SseParser::new(16);
        assert_eq!(p.feed(&[b'a'; 17]), Err(SseError::TooLarge(16)));
        assert_eq!(p.pending(), 0);
        // Completed in one feed but too big.
        assert_eq!(
            p.feed(b"data: 0123456789abcdef\n\n"),
            Err(SseError::TooLarge(16))
        );
        // Grows slowly across feeds without a newline.
        let mut p = SseParser::new(1000);
        let mut err = None;
        for _ in 0..2000 {
            if let Err(e) = p.feed(b"x") {
                err = Some(e);
                break;
            }
            assert!(p.pending() <= 1000);
        }
        assert_eq!(err, Some(SseError::TooLarge(1000)));
        // Many small events in one big chunk are fine.
        let mut p = SseParser::new(16);
        assert_eq!(p.feed(&b"data: x\n\n".repeat(1000)).unwrap().len(), 1000);
    }

    #[test]
    fn not_utf8() {
        let mut p = SseParser::new(100);
        assert_eq!(p.feed(b"data: \xff\xfe\n\n"), Err(SseError::NotUtf8));
        assert_eq!(p.pending(), 0);
        // A multi-byte char split across feeds is fine.
        let s = "data: é\n\n".as_bytes();
        assert!(p.feed(&s[..7]).unwrap().is_empty());
        assert_eq!(p.feed(&s[7..]).unwrap()[0].data, "é");
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut p = SseParser::new(64);
        for chunk in [
            &b"\r\r\r\n\n"[..],
            b":",
            b"\xEF\xBB",
            b"data",
            b"\r",
            b"\n\n",
            b"event:\n\n",
        ] {
            let _ = p.feed(chunk);
        }
        let mut seed = 12345u64;
        let alphabet = b"da:t \r\nevn\xff";
        let mut p = SseParser::new(64);
        for _ in 0..20000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let b = alphabet[(seed >> 33) as usize % alphabet.len()];
            let _ = p.feed(&[b]);
            assert!(p.pending() <= 64);
        }
    }
}
