//! Skipped values: brackets counted (their kinds checked) and strings jumped over, with a
//! `usage` object copied into the bounded capture as it passes.

use super::strings::string_end;
use super::{Found, Scanner, State};
use crate::observe::usage::Captured;

/// Nesting inside a skipped container; the open brackets' kinds live in one `u128`.
const MAX_SKIP_DEPTH: u32 = 128;

/// A skipped value: a container (its depth and the kinds of its open brackets, 1 = object)
/// or a string (depth 0).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Skip {
    depth: u32,
    objects: u128,
    in_string: bool,
    /// In a string, the next byte is escaped (the last frame ended in an odd backslash run).
    escaped: bool,
}

impl Skip {
    pub(super) fn in_string(&self) -> bool {
        self.in_string
    }
}

impl Scanner {
    /// Starts skipping a string value whose opening quote was just read.
    pub(super) fn enter_skip_string(&mut self) {
        self.skip = Skip {
            in_string: true,
            ..Skip::default()
        };
        self.state = State::Skip;
    }

    /// Starts skipping a container whose opening bracket was just read.
    pub(super) fn enter_skip(&mut self, object: bool) {
        self.skip = Skip {
            depth: 1,
            objects: u128::from(object),
            in_string: false,
            escaped: false,
        };
        self.state = State::Skip;
    }

    /// Inside a skipped value: counts brackets, jumps from quote to quote.
    pub(super) fn skipped(&mut self, input: &[u8], start: usize, found: &mut Found) -> usize {
        let mut at = start;
        let mut closed = false;
        'scan: while at < input.len() {
            if self.skip.in_string {
                let rest = input.get(at..).unwrap_or_default();
                let Some(end) = string_end(rest, &mut self.skip.escaped) else {
                    at = input.len();
                    break;
                };
                at += end;
                self.skip.in_string = false;
                if self.skip.depth == 0 {
                    closed = true;
                    break;
                }
            }
            while let Some(&b) = input.get(at) {
                at += 1;
                match b {
                    b'"' => {
                        self.skip.in_string = true;
                        continue 'scan;
                    }
                    b'{' | b'[' => {
                        if self.skip.depth >= MAX_SKIP_DEPTH {
                            self.fail();
                            return input.len();
                        }
                        self.skip.depth += 1;
                        self.skip.objects = self.skip.objects << 1 | u128::from(b == b'{');
                    }
                    b'}' | b']' => {
                        if self.skip.depth == 0 || (self.skip.objects & 1 == 1) != (b == b'}') {
                            self.fail();
                            return input.len();
                        }
                        self.skip.objects >>= 1;
                        self.skip.depth -= 1;
                        if self.skip.depth == 0 {
                            closed = true;
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        self.capture
            .append(input.get(start..at).unwrap_or_default());
        if closed {
            match self.capture.finish() {
                Captured::Usage(usage) => found.usage = Some(usage),
                Captured::Invalid => {
                    self.fail();
                    return at;
                }
                Captured::Dropped => {}
            }
            self.value_done();
        }
        at
    }
}
