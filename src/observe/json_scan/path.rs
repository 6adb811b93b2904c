//! The paths the scanner follows: the role of each value, decided from its parent's role and
//! its key, and what the observer wants right now.

use super::Flags;

/// The role of a value, from its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Skip,
    Root,
    Usage,
    Id,
    /// A conversation: an id string, or an object with an `id`.
    Conversation,
    ConversationObject,
    /// An event's `type`: a token when it ends in `.delta`.
    Type,
    Choices,
    Choice,
    Delta,
    /// Delta text: a token when non-empty.
    Text,
    /// `tool_calls`: a token when a non-empty array.
    ToolCalls,
    Response,
}

impl Node {
    /// The role of the value under `key` in an object of this role.
    pub(super) fn child(self, key: &[u8], f: Flags) -> Node {
        match (self, key) {
            (Node::Root | Node::Response, b"usage") if f.usage => Node::Usage,
            (Node::Root | Node::Response | Node::ConversationObject, b"id") if f.ids => Node::Id,
            (Node::Root | Node::Response, b"conversation") if f.ids => Node::Conversation,
            (Node::Root, b"response") if f.stream && (f.usage || f.ids) => Node::Response,
            (Node::Root, b"type") if f.stream && f.token => Node::Type,
            (Node::Root, b"choices") if f.stream && f.token => Node::Choices,
            (Node::Choice, b"delta") if f.token => Node::Delta,
            (Node::Delta, b"content" | b"refusal" | b"reasoning_content") if f.token => Node::Text,
            (Node::Delta, b"tool_calls") if f.token => Node::ToolCalls,
            _ => Node::Skip,
        }
    }

    /// The role of this object when it is followed (its frame), or `None` to skip it.
    pub(super) fn object(self) -> Option<Node> {
        match self {
            Node::Root | Node::Response | Node::Choice | Node::Delta => Some(self),
            Node::Conversation => Some(Node::ConversationObject),
            _ => None,
        }
    }

    pub(super) fn is_array(self) -> bool {
        self == Node::Choices
    }

    /// The role of this array's elements.
    pub(super) fn element(self) -> Node {
        match self {
            Node::Choices => Node::Choice,
            _ => Node::Skip,
        }
    }
}
