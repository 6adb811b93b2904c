//! A small bit set for per-request bookkeeping: 128 bits inline, heap only beyond that.

/// Set of small indices (rule numbers, capture slots, child positions).
///
/// Indices below 128 live inline, so the common case never allocates; larger indices spill
/// into a vector (only with very large operator rule sets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BitSet {
    inline: [u64; 2],
    spill: Vec<u64>,
}

impl BitSet {
    pub(crate) const fn new() -> BitSet {
        BitSet {
            inline: [0; 2],
            spill: Vec::new(),
        }
    }

    fn word_mut(&mut self, word: usize) -> Option<&mut u64> {
        if word < self.inline.len() {
            return self.inline.get_mut(word);
        }
        let at = word - self.inline.len();
        if self.spill.len() <= at {
            self.spill.resize(at + 1, 0);
        }
        self.spill.get_mut(at)
    }

    fn word(&self, word: usize) -> u64 {
        if word < self.inline.len() {
            self.inline.get(word).copied().unwrap_or(0)
        } else {
            self.spill
                .get(word - self.inline.len())
                .copied()
                .unwrap_or(0)
        }
    }

    /// Adds `index`; returns `true` if it was not present before.
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let bit = 1u64 << (index % 64);
        match self.word_mut(index / 64) {
            Some(word) => {
                let fresh = *word & bit == 0;
                *word |= bit;
                fresh
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        self.word(index / 64) & (1u64 << (index % 64)) != 0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inline.iter().chain(self.spill.iter()).all(|w| *w == 0)
    }

    /// Set indices in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.inline
            .iter()
            .chain(self.spill.iter())
            .enumerate()
            .flat_map(|(w, &word)| {
                let mut rest = word;
                std::iter::from_fn(move || {
                    if rest == 0 {
                        return None;
                    }
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    Some(w * 64 + bit)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_spilled_indices() {
        let mut set = BitSet::new();
        assert!(set.is_empty());
        for i in [0, 63, 64, 127, 128, 300] {
            assert!(set.insert(i));
            assert!(!set.insert(i));
            assert!(set.contains(i));
        }
        assert!(!set.contains(1));
        assert!(!set.contains(10_000));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![0, 63, 64, 127, 128, 300]
        );
        assert!(!set.is_empty());
        assert!(BitSet::new().spill.capacity() == 0);
    }
}
