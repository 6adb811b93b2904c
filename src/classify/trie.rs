//! The pointer trie: every body place the rules test, compiled once per config, plus the
//! allocation of capture slots and equality tests. `body.rs` walks it per request.
//!
//! An array index segment (`/input/0/…`) gets its own child that starts as a copy of the `*`
//! subtree, so that element matches both its own pointers and the wildcard ones.

use super::pointer::{Pointer, Segment};

/// A JSON scalar a rule compares a body value with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Box<str>),
}

impl Scalar {
    /// `None` for arrays and objects, which an equality test never matches.
    pub(crate) fn from_json(value: &serde_json::Value) -> Option<Scalar> {
        use serde_json::Value;
        Some(match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Scalar::Int(i128::from(i)),
                (_, Some(u), _) => Scalar::Int(i128::from(u)),
                (_, _, Some(f)) => Scalar::Float(f),
                _ => return None,
            },
            Value::String(s) => Scalar::Str(s.as_str().into()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Node {
    /// The pointer to this node, for the duplicate-key message.
    pub(super) text: Box<str>,
    /// Object members to descend into.
    pub(super) keys: Vec<(Box<str>, usize)>,
    /// Specific array elements (already merged with `each`).
    pub(super) indexes: Vec<(usize, usize)>,
    /// Every other array element.
    pub(super) each: Option<usize>,
    /// Slots to mark when the value here is present and not null.
    pub(super) slots: Vec<usize>,
    /// Equality tests to run on a scalar here.
    pub(super) tests: Vec<(Scalar, usize)>,
}

enum Leaf {
    Slot(usize),
    Test(Scalar, usize),
}

/// The compiled pointer trie; node 0 is the top-level object.
#[derive(Clone, Debug)]
pub(crate) struct Trie {
    pub(super) nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Trie {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Trie {
    /// Marks `slot` when `pointer` is present and not null.
    pub(crate) fn add_presence(&mut self, pointer: &Pointer, slot: usize) {
        self.insert(0, pointer.segments(), &Leaf::Slot(slot));
    }

    /// Marks `test` when the value at `pointer` equals `value`.
    pub(crate) fn add_test(&mut self, pointer: &Pointer, value: Scalar, test: usize) {
        self.insert(0, pointer.segments(), &Leaf::Test(value, test));
    }

    fn new_node(&mut self, text: String) -> usize {
        self.nodes.push(Node {
            text: text.into(),
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    fn child_text(&self, parent: usize, label: &str) -> String {
        let base = self.nodes.get(parent).map_or("", |n| &n.text);
        format!("{base}/{label}")
    }

    fn insert(&mut self, node: usize, segs: &[Segment], leaf: &Leaf) {
        match segs.split_first() {
            None => {
                let Some(n) = self.nodes.get_mut(node) else {
                    return;
                };
                match leaf {
                    Leaf::Slot(slot) if !n.slots.contains(slot) => n.slots.push(*slot),
                    Leaf::Slot(_) => {}
                    Leaf::Test(value, test) => n.tests.push((value.clone(), *test)),
                }
            }
            Some((Segment::Key(key), rest)) => {
                let child = self.key_child(node, key);
                self.insert(child, rest, leaf);
                if let Some(index) = Segment::index(key) {
                    let child = self.index_child(node, index);
                    self.insert(child, rest, leaf);
                }
            }
            Some((Segment::Each, rest)) => {
                let child = self.each_child(node);
                self.insert(child, rest, leaf);
                let specific: Vec<usize> = self
                    .nodes
                    .get(node)
                    .map(|n| n.indexes.iter().map(|(_, c)| *c).collect())
                    .unwrap_or_default();
                for child in specific {
                    self.insert(child, rest, leaf);
                }
            }
        }
    }

    fn key_child(&mut self, node: usize, key: &str) -> usize {
        let found = self
            .nodes
            .get(node)
            .and_then(|n| n.keys.iter().find(|(k, _)| **k == *key).map(|(_, c)| *c));
        if let Some(child) = found {
            return child;
        }
        let child = self.new_node(self.child_text(node, &escape(key)));
        if let Some(n) = self.nodes.get_mut(node) {
            n.keys.push((key.into(), child));
        }
        child
    }

    fn each_child(&mut self, node: usize) -> usize {
        if let Some(child) = self.nodes.get(node).and_then(|n| n.each) {
            return child;
        }
        let child = self.new_node(self.child_text(node, "*"));
        if let Some(n) = self.nodes.get_mut(node) {
            n.each = Some(child);
        }
        child
    }

    /// An element index child starts as a copy of the `*` subtree, so that element matches
    /// both its own pointers and the wildcard ones.
    fn index_child(&mut self, node: usize, index: usize) -> usize {
        let (found, each) = match self.nodes.get(node) {
            Some(n) => (
                n.indexes.iter().find(|(i, _)| *i == index).map(|(_, c)| *c),
                n.each,
            ),
            None => (None, None),
        };
        if let Some(child) = found {
            return child;
        }
        let text = self.child_text(node, &index.to_string());
        let child = match each {
            Some(each) => self.copy_subtree(each, text),
            None => self.new_node(text),
        };
        if let Some(n) = self.nodes.get_mut(node) {
            n.indexes.push((index, child));
        }
        child
    }

    fn copy_subtree(&mut self, src: usize, text: String) -> usize {
        let Some(original) = self.nodes.get(src).cloned() else {
            return self.new_node(text);
        };
        let copy = self.new_node(text);
        let mut keys = Vec::with_capacity(original.keys.len());
        for (key, child) in &original.keys {
            let text = self.child_text(copy, &escape(key));
            keys.push((key.clone(), self.copy_subtree(*child, text)));
        }
        let mut indexes = Vec::with_capacity(original.indexes.len());
        for (index, child) in &original.indexes {
            let text = self.child_text(copy, &index.to_string());
            indexes.push((*index, self.copy_subtree(*child, text)));
        }
        let each = original.each.map(|child| {
            let text = self.child_text(copy, "*");
            self.copy_subtree(child, text)
        });
        if let Some(n) = self.nodes.get_mut(copy) {
            n.keys = keys;
            n.indexes = indexes;
            n.each = each;
            n.slots = original.slots;
            n.tests = original.tests;
        }
        copy
    }
}

/// Allocates capture slots (one per distinct pointer) and equality tests, and builds the
/// trie from the active ones. Slots and tests are numbered in the order they are asked for.
#[derive(Debug, Default)]
pub(crate) struct Captures {
    trie: Trie,
    slots: Vec<(Pointer, bool)>,
    tests: Vec<(usize, Option<Scalar>, bool)>,
}

impl Captures {
    /// The slot for "`pointer` is present and not null". Only `active` slots are scanned for;
    /// an inactive one (a disabled built-in's) always reads as absent.
    pub(crate) fn slot(&mut self, pointer: &Pointer, active: bool) -> usize {
        let slot = match self.slots.iter().position(|(p, _)| p == pointer) {
            Some(slot) => slot,
            None => {
                self.slots.push((pointer.clone(), false));
                self.slots.len() - 1
            }
        };
        if let Some((_, in_trie)) = self.slots.get_mut(slot) {
            if active && !*in_trie {
                *in_trie = true;
                self.trie.add_presence(pointer, slot);
            }
        }
        slot
    }

    /// The test for "the value at `pointer` equals `value`" (`None`: never matches).
    pub(crate) fn test(&mut self, pointer: &Pointer, value: Option<Scalar>, active: bool) -> usize {
        let slot = self.slot(pointer, false);
        let test = match self
            .tests
            .iter()
            .position(|(s, v, _)| *s == slot && *v == value)
        {
            Some(test) => test,
            None => {
                self.tests.push((slot, value.clone(), false));
                self.tests.len() - 1
            }
        };
        if let Some((_, _, in_trie)) = self.tests.get_mut(test) {
            if active && !*in_trie {
                *in_trie = true;
                if let Some(value) = value {
                    self.trie.add_test(pointer, value, test);
                }
            }
        }
        test
    }

    pub(crate) fn into_trie(self) -> Trie {
        self.trie
    }
}
