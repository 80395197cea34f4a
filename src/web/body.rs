//! The response body: a list of byte chunks sent one after the other, so /metrics serves the
//! exposition's chunks as they are held instead of first copying them into one buffer. Runs of
//! small chunks (one map run's lines of one family) are joined into frames of up to
//! [`FRAME`] bytes as they are sent, so a large exposition is not written a few lines at a time.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

/// The size frames of small chunks are joined up to.
const FRAME: usize = 64 * 1024;

/// The chunks are shared with the exposition, not copied: a scrape costs a reference count.
#[derive(Debug)]
pub struct Chunks {
    chunks: Arc<[Bytes]>,
    /// The first chunk not sent yet.
    next: usize,
    remaining: u64,
}

impl Chunks {
    pub fn new(chunks: Arc<[Bytes]>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks,
            next: 0,
            remaining,
        }
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Self {
        Self::new(Arc::from([b]))
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let rest = &this.chunks[this.next.min(this.chunks.len())..];
        let Some(start) = rest.iter().position(|c| !c.is_empty()) else {
            this.next = this.chunks.len();
            return Poll::Ready(None);
        };
        let rest = &rest[start..];
        // The run of chunks that fits in one frame together (at least the first).
        let mut len = rest[0].len();
        let mut taken = 1;
        while let Some(c) = rest.get(taken) {
            if len + c.len() > FRAME {
                break;
            }
            len += c.len();
            taken += 1;
        }
        let frame = if taken == 1 {
            rest[0].clone()
        } else {
            let mut joined = BytesMut::with_capacity(len);
            for c in &rest[..taken] {
                joined.extend_from_slice(c);
            }
            joined.freeze()
        };
        this.next += start + taken;
        this.remaining -= frame.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    /// Exact, so the response carries a Content-Length.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn small_chunks_are_joined_into_frames_large_ones_sent_as_they_are() {
        let small = Bytes::from(vec![b's'; 100]);
        let large = Bytes::from(vec![b'L'; FRAME]);
        let mut chunks: Vec<Bytes> = vec![small.clone(); 1000];
        chunks.push(large.clone());
        chunks.push(small.clone());
        let mut body = Chunks::new(chunks.into());
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("infallible").into_data().expect("data");
            frames.push(data);
        }
        let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
        // 1,000 × 100 bytes: 655 fit in a frame, then 345; the large chunk alone; the last.
        assert_eq!(sizes, [65_500, 34_500, FRAME, 100]);
        assert!(frames.iter().flatten().take(100_000).all(|b| *b == b's'));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(0));
    }

    #[tokio::test]
    async fn sends_every_chunk_in_order_with_an_exact_length() {
        let body = Chunks::new(Arc::from([&b"ab"[..], b"", b"cde"].map(Bytes::from_static)));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        let collected = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(&collected[..], b"abcde");
    }
}
