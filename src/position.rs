//! Where a record sits in its stream. Below the join and the judge, which
//! both order records by it.

/// Where a record came from within its stream: the index of its source
/// (the topic among the stream's topics; the file of a merged replay), its
/// offset there (Kafka offset; line number) and its index among the
/// records of that message. Within a source, positions grow in the order
/// records are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position {
    pub source: u8,
    pub offset: u64,
    pub item: u16,
}

impl Position {
    pub const fn new(source: u8, offset: u64) -> Self {
        Position { source, offset, item: 0 }
    }

    /// Offset and item in one ordered key (offsets up to 2^48: 9 years of a
    /// million records a second in one partition).
    pub(crate) const fn key(self) -> u64 {
        (self.offset << 16) | self.item as u64
    }
}
