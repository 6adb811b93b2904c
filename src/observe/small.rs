//! A fixed-capacity byte buffer that drops its contents instead of growing.

/// Up to `N` bytes inline. Pushing past `N` (or [`SmallBuf::poison`]) marks the contents
/// unusable until the next [`SmallBuf::clear`]: a value that does not fit is no value at all.
#[derive(Clone, Debug)]
pub(crate) struct SmallBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> SmallBuf<N> {
    pub(crate) const fn new() -> Self {
        SmallBuf {
            bytes: [0; N],
            len: 0,
            overflow: false,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    pub(crate) fn push(&mut self, byte: u8) {
        self.extend(&[byte]);
    }

    pub(crate) fn extend(&mut self, run: &[u8]) {
        if self.overflow || run.is_empty() {
            return;
        }
        let end = self.len.saturating_add(run.len());
        match self.bytes.get_mut(self.len..end) {
            Some(slot) => {
                slot.copy_from_slice(run);
                self.len = end;
            }
            None => self.poison(),
        }
    }

    /// Marks the contents unusable (too long, or not representable).
    pub(crate) fn poison(&mut self) {
        self.overflow = true;
        self.len = 0;
    }

    /// The contents, or `None` if they overflowed or were poisoned.
    pub(crate) fn get(&self) -> Option<&[u8]> {
        if self.overflow {
            None
        } else {
            self.bytes.get(..self.len)
        }
    }

    /// Bytes held now (never more than `N`).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
