//! Copies of record payloads, kept in case a record turns out to be a duplicate (the DLQ
//! needs its original bytes). The copies are made into shared chunks rather than one
//! allocation each: a chunk holds the copies of a few hundred records and is freed when the
//! last of them is dropped, so memory stays bounded by the batches in flight.

use bytes::{Bytes, BytesMut};

const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub struct RawChunks {
    /// The free tail of the current chunk.
    free: BytesMut,
}

impl RawChunks {
    /// A copy of `payload` that shares its allocation with the copies made before it.
    pub fn keep(&mut self, payload: &[u8]) -> Bytes {
        if self.free.capacity() < payload.len() {
            self.free = BytesMut::with_capacity(CHUNK_BYTES.max(payload.len()));
        }
        self.free.extend_from_slice(payload);
        self.free.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_exact_and_share_a_chunk_until_it_is_full() {
        let mut chunks = RawChunks::default();
        let a = chunks.keep(b"first");
        let b = chunks.keep(b"second");
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        // Consecutive copies sit side by side in one allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());

        let big = vec![7u8; CHUNK_BYTES + 1];
        let c = chunks.keep(&big);
        assert_eq!(&c[..], &big[..]);
        let d = chunks.keep(b"after");
        assert_eq!(&d[..], b"after");
        drop((a, b));
        assert_eq!(
            &d[..],
            b"after",
            "a chunk outlives the copies dropped before it"
        );
    }
}
