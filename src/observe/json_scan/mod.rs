//! The incremental JSON scanner: a byte state machine, resumable at any byte, that follows
//! only the paths the observer asks about and skips everything else.
//!
//! Followed containers (the root object, `response`, `conversation`, `choices[*].delta`) sit
//! on a small frame stack and their keys are decoded (escapes included) into a bounded
//! buffer. Any other container is skipped by counting brackets, with string contents jumped
//! over by `memchr`; a skipped `usage` object is copied into a bounded capture as it passes
//! and parsed once it closes. Strings of interest (ids, `type`, delta text) are decoded into a
//! bounded buffer. Malformed input stops the scan for good: nothing is reported after it.

mod path;
mod skip;
mod strings;

use super::small::SmallBuf;
use super::usage::Capture;
use super::{StateId, Usage, MAX_ID_BODY};
use path::Node;
use skip::Skip;
use strings::{Escape, Target};

/// The largest `usage` object kept; a larger one is dropped, never grown.
pub const USAGE_CAP: usize = 8 * 1024;
/// The longest string value kept: an id, its longest prefix plus [`MAX_ID_BODY`] bytes.
pub const TEXT_CAP: usize = "chatcmpl-".len() + MAX_ID_BODY;
/// Keys longer than this cannot be one of ours and are not kept.
pub(crate) const KEY_CAP: usize = 32;
/// Followed containers nest at most this deep (root → choices → choice → delta is 4).
const MAX_FRAMES: usize = 6;

/// What the observer wants from the document being scanned; consulted at each key.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Flags {
    pub(crate) usage: bool,
    pub(crate) ids: bool,
    pub(crate) token: bool,
    /// An SSE event's data: follow `response.*`, `choices[*].delta` and `type` too.
    pub(crate) stream: bool,
}

/// What a scan found since the caller last looked.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) token: bool,
    pub(crate) ids: Vec<StateId>,
    pub(crate) usage: Option<Usage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value for `pending` comes next.
    Value,
    /// Just after a followed object's `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in a followed object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value in a followed container: `,` or its closing bracket.
    After,
    /// Just after a followed array's `[`: a value or `]`.
    ArrayFirst,
    /// Just after `tool_calls`' `[`: `]`, or a first element (a token).
    ToolCallsFirst,
    /// Inside a decoded string (a key, or a value of interest).
    Str,
    /// Inside a number, `true`, `false` or `null`.
    Literal,
    /// Inside a skipped value.
    Skip,
    /// The document is complete; the rest is ignored.
    Done,
    /// The input is not JSON; the rest is ignored.
    Failed,
}

/// One JSON document's scan; [`Scanner::reset`] starts the next one.
#[derive(Debug)]
pub(crate) struct Scanner {
    state: State,
    frames: [Node; MAX_FRAMES],
    depth: usize,
    pending: Node,
    target: Target,
    escape: Escape,
    nonempty: bool,
    key: SmallBuf<KEY_CAP>,
    text: SmallBuf<TEXT_CAP>,
    skip: Skip,
    capture: Capture,
    saw_object: bool,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A byte of a number, `true`, `false` or `null` (a superset: the literal is not checked).
fn is_literal(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'E' | b'.' | b'+' | b'-')
}

impl Scanner {
    pub(crate) fn new() -> Scanner {
        Scanner {
            state: State::Value,
            frames: [Node::Skip; MAX_FRAMES],
            depth: 0,
            pending: Node::Root,
            target: Target::Token,
            escape: Escape::No,
            nonempty: false,
            key: SmallBuf::new(),
            text: SmallBuf::new(),
            skip: Skip::default(),
            capture: Capture::new(),
            saw_object: false,
        }
    }

    /// Starts a new document (the capture keeps its allocation).
    pub(crate) fn reset(&mut self) {
        self.state = State::Value;
        self.depth = 0;
        self.pending = Node::Root;
        self.saw_object = false;
        self.capture.stop();
    }

    /// The document began as an object.
    pub(crate) fn saw_object(&self) -> bool {
        self.saw_object
    }

    /// The `\n` that joins two SSE data lines: JSON whitespace, but never inside a string.
    pub(crate) fn line_break(&mut self, flags: Flags, found: &mut Found) {
        let in_string = match self.state {
            State::Str => true,
            State::Skip => self.skip.in_string(),
            _ => false,
        };
        if in_string {
            self.fail();
        } else {
            self.feed(b"\n", flags, found);
        }
    }

    /// Scans the next bytes of the document.
    pub(crate) fn feed(&mut self, input: &[u8], flags: Flags, found: &mut Found) {
        let mut at = 0;
        while let Some(&byte) = input.get(at) {
            match self.state {
                State::Done | State::Failed => return,
                State::Str => at = self.string(input, at, found),
                State::Skip => at = self.skipped(input, at, found),
                State::Literal => {
                    let rest = input.get(at..).unwrap_or_default();
                    match rest.iter().position(|&b| !is_literal(b)) {
                        Some(n) => {
                            at += n;
                            let end = rest.get(n).copied().unwrap_or_default();
                            if is_space(end) || matches!(end, b',' | b'}' | b']') {
                                self.value_done();
                            } else {
                                self.fail();
                            }
                        }
                        None => at = input.len(),
                    }
                }
                _ => {
                    if self.step(byte, flags, found) {
                        at += 1;
                    }
                }
            }
        }
    }

    /// One structural byte; `false` when it must be looked at again in the new state.
    fn step(&mut self, b: u8, flags: Flags, found: &mut Found) -> bool {
        match self.state {
            _ if is_space(b) => {}
            State::Value => self.value(b),
            State::ObjectFirst | State::Key => match b {
                b'"' => self.begin_string(Target::Key),
                b'}' if self.state == State::ObjectFirst => self.close(false),
                _ => self.fail(),
            },
            State::Colon => match b {
                b':' => {
                    let top = self.top();
                    self.pending = self.key.get().map_or(Node::Skip, |k| top.child(k, flags));
                    self.state = State::Value;
                }
                _ => self.fail(),
            },
            State::After => match b {
                b',' => {
                    let top = self.top();
                    if top.is_array() {
                        self.pending = top.element();
                        self.state = State::Value;
                    } else {
                        self.state = State::Key;
                    }
                }
                b'}' => self.close(false),
                b']' => self.close(true),
                _ => self.fail(),
            },
            State::ArrayFirst => match b {
                b']' => self.close(true),
                _ => {
                    self.pending = self.top().element();
                    self.state = State::Value;
                    return false;
                }
            },
            State::ToolCallsFirst => match b {
                b']' => self.value_done(),
                _ => {
                    found.token = true;
                    self.enter_skip(false);
                    return false;
                }
            },
            State::Str | State::Skip | State::Literal | State::Done | State::Failed => {}
        }
        true
    }

    /// The first byte of a value for `pending`.
    fn value(&mut self, b: u8) {
        match b {
            b'{' => {
                if self.depth == 0 {
                    self.saw_object = true;
                }
                match self.pending.object() {
                    Some(node) => self.push(node, State::ObjectFirst),
                    None => {
                        if self.pending == Node::Usage {
                            self.capture.begin();
                        }
                        self.enter_skip(true);
                    }
                }
            }
            b'[' => match self.pending {
                Node::Choices => self.push(Node::Choices, State::ArrayFirst),
                Node::ToolCalls => self.state = State::ToolCallsFirst,
                _ => self.enter_skip(false),
            },
            b'"' => match self.pending {
                Node::Id | Node::Conversation | Node::Type => self.begin_string(Target::Text),
                Node::Text => self.begin_string(Target::Token),
                _ => self.enter_skip_string(),
            },
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => self.state = State::Literal,
            _ => self.fail(),
        }
    }

    fn top(&self) -> Node {
        self.depth
            .checked_sub(1)
            .and_then(|top| self.frames.get(top))
            .copied()
            .unwrap_or(Node::Skip)
    }

    fn push(&mut self, node: Node, state: State) {
        match self.frames.get_mut(self.depth) {
            Some(frame) => {
                *frame = node;
                self.depth += 1;
                self.state = state;
            }
            None => self.fail(),
        }
    }

    /// A followed container's closing bracket.
    fn close(&mut self, array: bool) {
        if self.depth == 0 || self.top().is_array() != array {
            return self.fail();
        }
        self.depth -= 1;
        self.value_done();
    }

    fn value_done(&mut self) {
        self.state = if self.depth == 0 {
            State::Done
        } else {
            State::After
        };
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.capture.stop();
    }

    /// Body-derived bytes held now: the capture's allocation and the string buffers.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.capture.capacity() + self.key.len() + self.text.len()
    }

    #[cfg(test)]
    pub(crate) fn capture_capacity(&self) -> usize {
        self.capture.capacity()
    }
}
