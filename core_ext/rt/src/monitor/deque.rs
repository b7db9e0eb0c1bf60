//! Fixed-capacity deque of sample sequence numbers for the monotonic min / max queues.

/// Fixed-capacity deque of sample sequence numbers (never grows after construction).
#[derive(Debug, Clone)]
pub(super) struct SeqDeque {
    buf: Vec<u64>,
    head: usize,
    len: usize,
}

impl SeqDeque {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            buf: vec![0; cap],
            head: 0,
            len: 0,
        }
    }
    pub(super) fn front(&self) -> Option<u64> {
        (self.len > 0).then(|| self.buf[self.head])
    }
    pub(super) fn back(&self) -> Option<u64> {
        (self.len > 0).then(|| self.buf[(self.head + self.len - 1) % self.buf.len()])
    }
    pub(super) fn pop_front(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.buf.len();
            self.len -= 1;
        }
    }
    pub(super) fn pop_back(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
    /// Callers keep at most `cap` live entries (one per sample in the window).
    pub(super) fn push_back(&mut self, v: u64) {
        if self.len == self.buf.len() {
            self.pop_front();
        }
        let i = (self.head + self.len) % self.buf.len();
        self.buf[i] = v;
        self.len += 1;
    }
    pub(super) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}
