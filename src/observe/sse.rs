//! The incremental server-sent-events parser: splits the stream into fields without holding a
//! line, and feeds each event's `data` through the JSON scanner as it arrives.
//!
//! Per the SSE spec: lines end in `\n`, `\r\n` or `\r`; `field: value` with one optional space
//! after the colon; a line without a colon is a field with an empty value; `:` starts a
//! comment; several `data` lines of one event are joined with `\n`; a blank line ends the
//! event; a leading byte-order mark is ignored. Only `event` and `data` matter here.

use memchr::{memchr2, memchr3};

use super::json_scan::{Flags, Found, Scanner};
use super::small::SmallBuf;
use super::Want;

/// The longest event name kept (longer ones are dropped: they are not `….delta`).
pub const EVENT_CAP: usize = 256;
/// Field names longer than this are none of ours.
pub(crate) const FIELD_CAP: usize = 8;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// What a field's value is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Data,
    Event,
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// In a field name.
    Field,
    /// Just after the colon: one space may follow.
    Space(Kind),
    /// In a field's value.
    Value(Kind),
}

/// The parser's state between frames.
#[derive(Debug)]
pub(crate) struct Sse {
    want: Want,
    line: Line,
    /// The last line ended in `\r`: a `\n` next belongs to it.
    after_cr: bool,
    /// Bytes of a leading BOM matched so far; `BOM.len()` once settled.
    bom: usize,
    field: SmallBuf<FIELD_CAP>,
    event: SmallBuf<EVENT_CAP>,
    /// The current event has data (its JSON document has begun).
    data: bool,
    /// What the current event's JSON is scanned for: decided once, at its first `data` field,
    /// so that a first token found mid-event cannot change the scan between two frames (the
    /// outcome must not depend on where the body is split).
    scan: Flags,
    token_seen: bool,
    ids_done: bool,
}

impl Sse {
    pub(crate) fn new(want: Want) -> Sse {
        Sse {
            want,
            line: Line::Start,
            after_cr: false,
            bom: 0,
            field: SmallBuf::new(),
            event: SmallBuf::new(),
            data: false,
            scan: Flags::default(),
            token_seen: false,
            ids_done: false,
        }
    }

    /// What the JSON of an event starting now would be scanned for.
    fn flags(&self) -> Flags {
        Flags {
            usage: self.want.usage,
            ids: self.want.ids && !self.ids_done,
            token: self.want.first_token && !self.token_seen,
            stream: true,
        }
    }

    pub(crate) fn feed(&mut self, input: &[u8], scanner: &mut Scanner, found: &mut Found) {
        let mut at = self.skip_bom(input);
        while let Some(&b) = input.get(at) {
            let rest = input.get(at..).unwrap_or_default();
            match self.line {
                Line::Start => {
                    at += 1;
                    if std::mem::take(&mut self.after_cr) && b == b'\n' {
                        continue;
                    }
                    match b {
                        b'\n' | b'\r' => {
                            self.after_cr = b == b'\r';
                            self.dispatch(scanner);
                        }
                        b':' => self.line = Line::Value(Kind::Ignore),
                        _ => {
                            self.field.clear();
                            self.field.push(b);
                            self.line = Line::Field;
                        }
                    }
                }
                Line::Field => {
                    let Some(n) = memchr3(b':', b'\n', b'\r', rest) else {
                        self.field.extend(rest);
                        return;
                    };
                    self.field.extend(rest.get(..n).unwrap_or_default());
                    at += n + 1;
                    let kind = self.kind();
                    self.begin_value(kind, scanner, found);
                    match rest.get(n) {
                        Some(b':') => self.line = Line::Space(kind),
                        end => self.end_line(kind, end == Some(&b'\r'), found),
                    }
                }
                Line::Space(kind) => {
                    if b == b' ' {
                        at += 1;
                    }
                    self.line = Line::Value(kind);
                }
                Line::Value(kind) => {
                    let end = memchr2(b'\n', b'\r', rest);
                    let run = rest.get(..end.unwrap_or(rest.len())).unwrap_or_default();
                    match kind {
                        Kind::Data => {
                            scanner.feed(run, self.scan, found);
                            self.token_seen |= found.token;
                        }
                        Kind::Event => self.event.extend(run),
                        Kind::Ignore => {}
                    }
                    let Some(n) = end else {
                        return;
                    };
                    at += n + 1;
                    self.end_line(kind, rest.get(n) == Some(&b'\r'), found);
                }
            }
        }
    }

    /// Consumes a leading byte-order mark; a mismatch makes the first line an unknown field.
    fn skip_bom(&mut self, input: &[u8]) -> usize {
        let mut at = 0;
        while let (Some(&want), Some(&b)) = (BOM.get(self.bom), input.get(at)) {
            if b != want {
                if self.bom > 0 {
                    self.field.poison();
                    self.line = Line::Field;
                }
                self.bom = BOM.len();
                break;
            }
            self.bom += 1;
            at += 1;
        }
        at
    }

    /// The field just named, and whether anything is wanted from it.
    fn kind(&self) -> Kind {
        match self.field.get() {
            Some(b"data") => {
                let flags = self.flags();
                if self.data || flags.usage || flags.ids || flags.token {
                    Kind::Data
                } else {
                    Kind::Ignore
                }
            }
            Some(b"event") if self.want.first_token && !self.token_seen => Kind::Event,
            _ => Kind::Ignore,
        }
    }

    fn begin_value(&mut self, kind: Kind, scanner: &mut Scanner, found: &mut Found) {
        match kind {
            Kind::Data if self.data => scanner.line_break(self.scan, found),
            Kind::Data => {
                self.data = true;
                scanner.reset();
                self.check_event(found);
                self.scan = self.flags();
            }
            Kind::Event => self.event.clear(),
            Kind::Ignore => {}
        }
    }

    fn end_line(&mut self, kind: Kind, cr: bool, found: &mut Found) {
        if kind == Kind::Event && self.data {
            self.check_event(found);
        }
        self.after_cr = cr;
        self.line = Line::Start;
    }

    /// An event with data named `….delta` carries the first token.
    fn check_event(&mut self, found: &mut Found) {
        let delta = self
            .event
            .get()
            .is_some_and(|name| name.ends_with(b".delta"));
        if delta && self.want.first_token && !self.token_seen {
            found.token = true;
            self.token_seen = true;
        }
    }

    /// A blank line: the event ends; ids come only from the first event that was JSON.
    fn dispatch(&mut self, scanner: &mut Scanner) {
        if self.data && scanner.saw_object() {
            self.ids_done = true;
        }
        if self.data {
            scanner.reset();
        }
        self.data = false;
        self.event.clear();
    }

    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.field.len() + self.event.len()
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
