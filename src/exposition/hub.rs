//! The encoded exposition, assembled from what each source instance published and served from
//! cache by /metrics and the OTLP push.
//!
//! A publish replaces one (source, target) part and costs only that part: its text is the
//! source's own bytes, and its deflate pieces (one per family, each ended by a full flush, so
//! pieces concatenate into one deflate stream) are compressed once, by the next assembly; a
//! family whose text did not change since the part it replaces keeps its piece. An
//! assembly lays the parts out family by family (one header each, families contiguous) and
//! concatenates the cached pieces into one gzip member, its CRC-32 combined from theirs; only the
//! exporter's few process-wide metrics are encoded and compressed anew; each account's own
//! series are a part too, rendered and compressed again only when they changed. Assemblies
//! run on one thread, coalesced: many sources publishing together cost one assembly, and
//! assemblies never take more than about 1/[`GAP_FACTOR`] of a core.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use prometheus::{Encoder, TextEncoder};

use crate::exposition::family::Family;
use crate::exposition::self_metrics::SelfMetrics;
use crate::exposition::text;

/// The exposition text and its gzip encoding, shared by all scrapes until the next assembly.
///
/// The text is kept as the chunks it was built from (headers, then the lines each source
/// published, then the exporter's own metrics), each a whole number of lines: the series lines
/// are the sources' own bytes, shared rather than copied into one buffer. The gzip encoding is
/// kept likewise: the gzip header, one deflate piece per chunk run (header, family part,
/// self-metrics text) in the same order, then the final block and the gzip trailer.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub chunks: Arc<[Bytes]>,
    /// Chunks whose concatenation is the gzip encoding of `chunks` (one gzip member); empty if
    /// compressing failed (then /metrics serves the text uncompressed).
    pub gzip: Arc<[Bytes]>,
    /// Counts assemblies: a pusher tells by it whether it already sent this exposition.
    pub generation: u64,
    /// Every publish numbered up to this one is in this exposition.
    pub covers: u64,
}

/// What one source instance publishes after a poll.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub families: Vec<Family>,
    /// (kind, count) for `aws_workflow_exporter_tracked_resources`.
    pub tracked: Vec<(&'static str, usize)>,
}

/// One source instance's latest snapshot, or one account's own series, with its deflate pieces
/// once compressed.
#[derive(Debug)]
struct Part {
    families: Arc<[Family]>,
    tracked: Vec<(&'static str, usize)>,
    /// The pieces of the families that are the same as in the part this one replaced, by
    /// family index: a poll that changed a few families costs compressing those few.
    carried: Vec<Option<Arc<Deflated>>>,
    /// One deflate piece per family, in order.
    gzip: OnceLock<Option<Vec<Arc<Deflated>>>>,
}

impl Part {
    fn new(families: Arc<[Family]>, tracked: Vec<(&'static str, usize)>) -> Self {
        Self {
            families,
            tracked,
            carried: Vec::new(),
            gzip: OnceLock::new(),
        }
    }

    /// This part, keeping the deflate pieces of `previous` for each family whose text is the
    /// same (compared byte for byte: far cheaper than compressing it again).
    fn carrying(mut self, previous: &Part) -> Self {
        let Some(Some(pieces)) = previous.gzip.get() else {
            return self;
        };
        let old: HashMap<&str, (&Family, &Arc<Deflated>)> = previous
            .families
            .iter()
            .zip(pieces)
            .map(|(f, piece)| (f.def.name, (f, piece)))
            .collect();
        self.carried = self
            .families
            .iter()
            .map(|f| {
                let (was, piece) = old.get(f.def.name)?;
                same_text(&was.blocks, &f.blocks).then(|| Arc::clone(piece))
            })
            .collect();
        self
    }

    /// The deflate pieces, compressing (with `z`) the families not carried over.
    fn pieces(&self, z: &mut Compress) -> &Option<Vec<Arc<Deflated>>> {
        self.gzip.get_or_init(|| {
            self.families
                .iter()
                .enumerate()
                .map(|(i, f)| match self.carried.get(i) {
                    Some(Some(piece)) => Some(Arc::clone(piece)),
                    _ => deflated(z, &f.blocks).map(Arc::new),
                })
                .collect()
        })
    }
}

/// Whether two runs of chunks hold the same bytes (however they are split).
fn same_text(a: &[Bytes], b: &[Bytes]) -> bool {
    let len = |c: &[Bytes]| c.iter().map(Bytes::len).sum::<usize>();
    len(a) == len(b)
        && a.iter()
            .flat_map(|c| c.iter())
            .eq(b.iter().flat_map(|c| c.iter()))
}

/// A wait of at least this long after publishes before assembling, so that sources finishing
/// together cost one assembly.
const COALESCE: Duration = Duration::from_millis(100);
/// After an assembly that took `t`, publishes gather for `GAP_FACTOR * t` before the next.
const GAP_FACTOR: u32 = 20;

/// Collects each source's latest families and keeps the encoded exposition.
#[derive(Debug)]
pub struct MetricsHub {
    shared: Arc<Shared>,
    /// False if the assembler thread could not start: each publish then assembles at once.
    coalescing: bool,
}

#[derive(Debug)]
struct Shared {
    self_metrics: Arc<SelfMetrics>,
    /// Latest part per (source, target key), and the number of the last publish.
    published: Mutex<(Parts, u64)>,
    /// Held through a whole assembly: assemblies run one at a time, each from the parts as they
    /// are when it starts, so a slow assembly of older parts never replaces a newer exposition
    /// (a scrape could otherwise see a counter go down).
    rebuilding: Mutex<Kept>,
    current: RwLock<Arc<Exposition>>,
    /// Set by a publish, cleared by the assembler when it starts; it waits on `wake`.
    dirty: Mutex<bool>,
    wake: Condvar,
}

/// The latest part per (source, target key).
type Parts = BTreeMap<(String, String), Arc<Part>>;

/// What one assembly keeps for the next.
#[derive(Debug, Default)]
struct Kept {
    /// Each family's header, as text and as a deflate piece, by family name.
    headers: BTreeMap<&'static str, (Bytes, Deflated)>,
    /// The parts of the accounts' own series, whose deflate pieces serve again while their
    /// families are the same (the same `Arc`).
    accounts: Vec<Arc<Part>>,
}

impl MetricsHub {
    /// An empty hub, assembled once, with its assembler thread (which ends with the hub).
    pub fn new(self_metrics: Arc<SelfMetrics>) -> Self {
        let shared = Arc::new(Shared {
            self_metrics,
            published: Mutex::new((BTreeMap::new(), 0)),
            rebuilding: Mutex::new(Kept::default()),
            current: RwLock::new(Arc::new(Exposition::default())),
            dirty: Mutex::new(false),
            wake: Condvar::new(),
        });
        shared.rebuild();
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("exposition".into())
            .spawn(move || assembler(weak));
        if let Err(e) = &spawned {
            tracing::error!(error = %e, "the exposition assembler thread did not start; each publish assembles at once");
        }
        Self {
            shared,
            coalescing: spawned.is_ok(),
        }
    }

    pub fn self_metrics(&self) -> &Arc<SelfMetrics> {
        &self.shared.self_metrics
    }

    /// Replaces one source instance's snapshot; the next assembly (soon, coalesced with other
    /// publishes) shows it. Returns the publish's number (see [`Exposition::covers`]).
    pub fn publish(&self, source: &str, target: &str, snapshot: Snapshot) -> u64 {
        let key = (source.to_owned(), target.to_owned());
        let mut part = Part::new(snapshot.families.into(), snapshot.tracked);
        let previous = self
            .shared
            .published
            .lock()
            .expect("hub lock")
            .0
            .get(&key)
            .cloned();
        if let Some(previous) = &previous {
            part = part.carrying(previous);
        }
        let (seq, replaced) = {
            let mut published = self.shared.published.lock().expect("hub lock");
            let replaced = published.0.insert(key, Arc::new(part));
            published.1 += 1;
            (published.1, replaced)
        };
        // Freed outside the lock: a part holds thousands of allocations.
        drop((previous, replaced));
        self.changed();
        seq
    }

    /// Drops what a source instance published (it was removed by a reload).
    pub fn remove(&self, source: &str, target: &str) {
        let removed = {
            let mut published = self.shared.published.lock().expect("hub lock");
            published.1 += 1;
            published.0.remove(&(source.to_owned(), target.to_owned()))
        };
        // Kinds only the removed instance tracked would keep their last count otherwise.
        for (kind, _) in removed.map(|p| p.tracked.clone()).unwrap_or_default() {
            self.shared.self_metrics.set_tracked(kind, 0);
        }
        self.changed();
    }

    fn changed(&self) {
        if self.coalescing {
            self.shared.mark_dirty();
        } else {
            self.shared.rebuild();
        }
    }

    /// The number of the last publish (or removal); an exposition whose `covers` is at least
    /// this shows it.
    pub fn last_publish(&self) -> u64 {
        self.shared.published.lock().expect("hub lock").1
    }

    /// The exposition as last assembled; cheap, never blocks on AWS or on an assembly.
    pub fn current(&self) -> Arc<Exposition> {
        self.shared.current()
    }

    /// Assembles now, on the caller's thread, if anything was published since the last
    /// assembly; then returns the exposition (for a last OTLP push at shutdown).
    pub fn flush(&self) -> Arc<Exposition> {
        self.shared.assemble(true);
        self.current()
    }

    /// Assembles now, on the caller's thread (after a reload, or to show self-metrics that
    /// changed without a publish).
    pub fn rebuild(&self) {
        self.shared.rebuild();
    }
}

/// The assembler thread: waits for a publish, lets publishes gather for [`GAP_FACTOR`] times
/// what the last assembly took (at least [`COALESCE`]), then assembles. Sources that publish
/// over a few seconds (hundreds of targets finishing their polls) cost one assembly, and
/// assemblies take at most a 21st of a core. Ends when the hub is dropped.
fn assembler(hub: Weak<Shared>) {
    let mut took = Duration::ZERO;
    loop {
        let Some(shared) = hub.upgrade() else { return };
        {
            let dirty = shared.dirty.lock().expect("hub dirty lock");
            let (dirty, _) = shared
                .wake
                .wait_timeout_while(dirty, Duration::from_secs(1), |d| !*d)
                .expect("hub dirty lock");
            if !*dirty {
                continue; // checks whether the hub still exists
            }
        }
        drop(shared);
        std::thread::sleep(COALESCE.max(took * GAP_FACTOR));
        let Some(shared) = hub.upgrade() else { return };
        // Cleared before reading the parts: a publish from now on is assembled next time.
        *shared.dirty.lock().expect("hub dirty lock") = false;
        let started = Instant::now();
        shared.assemble(true);
        took = started.elapsed();
    }
}

impl Shared {
    fn current(&self) -> Arc<Exposition> {
        self.current.read().expect("exposition lock").clone()
    }

    fn mark_dirty(&self) {
        *self.dirty.lock().expect("hub dirty lock") = true;
        self.wake.notify_one();
    }

    /// Lays out the families of all parts, one header per family name, then the exporter's own
    /// metrics; the gzip encoding likewise from each part's cached deflate pieces.
    ///
    /// Assemblies run one at a time: two must not let the one that read the self-metrics first
    /// store its exposition last, which would take a `poll_success` back and move counters
    /// backwards until the next one. The series lines are shared with the parts, not copied.
    fn rebuild(&self) {
        self.assemble(false);
    }

    /// [`Self::rebuild`]; with `if_stale`, only if the exposition does not show every publish
    /// yet (checked once this assembly's turn has come: one just before may have shown them).
    fn assemble(&self, if_stale: bool) {
        let mut kept = self.rebuilding.lock().expect("rebuild lock");
        let started = Instant::now();
        let (parts, covers) = {
            let published = self.published.lock().expect("hub lock");
            if if_stale && self.current().covers >= published.1 {
                return;
            }
            (
                published.0.values().cloned().collect::<Vec<_>>(),
                published.1,
            )
        };
        // The accounts' own series: an account whose series did not change since the last
        // assembly has the same families, and its part keeps its deflate pieces.
        let accounts: Vec<Arc<Part>> = {
            let last: HashMap<*const Family, &Arc<Part>> = kept
                .accounts
                .iter()
                .map(|p| (p.families.as_ptr(), p))
                .collect();
            self.self_metrics
                .accounts()
                .families()
                .into_iter()
                .map(|families| match last.get(&families.as_ptr()) {
                    Some(part) => Arc::clone(part),
                    None => Arc::new(Part::new(families, Vec::new())),
                })
                .collect()
        };
        let mut tracked: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_name: BTreeMap<&'static str, Vec<(&Family, Option<&Deflated>)>> =
            BTreeMap::new();
        let mut z = Compress::new(Compression::fast(), false);
        let mut gzip_ok = true;
        for part in parts.iter().chain(&accounts) {
            for (kind, n) in &part.tracked {
                *tracked.entry(kind).or_default() += n;
            }
            let pieces = part.pieces(&mut z);
            gzip_ok &= pieces.is_some();
            for (i, f) in part.families.iter().enumerate() {
                let piece = pieces.as_ref().and_then(|p| p.get(i)).map(Arc::as_ref);
                by_name.entry(f.def.name).or_default().push((f, piece));
            }
        }
        for (kind, n) in tracked {
            self.self_metrics.set_tracked(kind, n);
        }
        let mut chunks = Vec::new();
        let mut gzip = Gzip::new();
        for (name, families) in by_name {
            if !kept.headers.contains_key(name) {
                let text = Bytes::from(text::header(families[0].0.def));
                match deflated(&mut z, std::slice::from_ref(&text)) {
                    Some(piece) => {
                        kept.headers.insert(name, (text, piece));
                    }
                    None => gzip_ok = false,
                }
            }
            match kept.headers.get(name) {
                Some((text, piece)) => {
                    chunks.push(text.clone());
                    gzip.push(piece);
                }
                None => chunks.push(Bytes::from(text::header(families[0].0.def))),
            }
            for (f, piece) in families {
                chunks.extend(f.blocks.iter().cloned());
                if let Some(piece) = piece {
                    gzip.push(piece);
                }
            }
        }
        let mut own = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.self_metrics.gather(), &mut own) {
            tracing::error!(error = %e, "encoding the exposition failed; keeping the previous one");
            return;
        }
        let own = Bytes::from(own);
        match deflated(&mut z, std::slice::from_ref(&own)) {
            Some(piece) => gzip.push(&piece),
            None => gzip_ok = false,
        }
        chunks.push(own);
        kept.accounts = accounts;
        let gzip = if gzip_ok {
            gzip.finish()
        } else {
            tracing::error!("compressing the exposition failed; /metrics serves it uncompressed");
            Vec::new()
        };
        // Counted in the next exposition: this one's text is already encoded.
        self.self_metrics.record_rebuild(started.elapsed());
        let generation = self.current().generation + 1;
        *self.current.write().expect("exposition lock") = Arc::new(Exposition {
            chunks: chunks.into(),
            gzip: gzip.into(),
            generation,
            covers,
        });
    }
}

/// The fixed header of a gzip member: no name or comment, mtime 0, unknown OS (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final deflate block with no data (fixed Huffman codes, end of block): ends the stream.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// Text compressed as raw deflate blocks ending in a full flush (byte-aligned, not final, no
/// reference to earlier data), so pieces concatenate into one deflate stream; and its CRC-32.
#[derive(Debug)]
struct Deflated {
    bytes: Bytes,
    crc: Crc,
}

/// One gzip member built from deflate pieces, as chunks.
struct Gzip {
    chunks: Vec<Bytes>,
    crc: Crc,
}

impl Gzip {
    fn new() -> Self {
        Self {
            chunks: vec![Bytes::from_static(&GZIP_HEADER)],
            crc: Crc::new(),
        }
    }

    fn push(&mut self, piece: &Deflated) {
        self.chunks.push(piece.bytes.clone());
        self.crc.combine(&piece.crc);
    }

    /// The member: header, pieces, the final block and the trailer (CRC-32, length mod 2^32).
    fn finish(mut self) -> Vec<Bytes> {
        let mut tail = Vec::with_capacity(10);
        tail.extend_from_slice(&FINAL_EMPTY_BLOCK);
        tail.extend_from_slice(&self.crc.sum().to_le_bytes());
        tail.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.chunks.push(Bytes::from(tail));
        self.chunks
    }
}

/// `chunks` one after the other as a [`Deflated`] piece, compressed with `z` (reset first, so
/// one compressor's memory serves every piece); `None` if the compressor fails.
fn deflated(z: &mut Compress, chunks: &[Bytes]) -> Option<Deflated> {
    z.reset();
    let mut crc = Crc::new();
    let len: usize = chunks.iter().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(len / 4 + 64);
    for c in chunks {
        crc.update(c);
        deflate(z, c, &mut out, FlushCompress::None)?;
    }
    deflate(z, &[], &mut out, FlushCompress::Full)?;
    // Held until the part is published again: give back what growing `out` reserved (most
    // pieces compress to a fraction of the 1 KiB reserved for them).
    out.shrink_to_fit();
    Some(Deflated {
        bytes: Bytes::from(out),
        crc,
    })
}

/// Feeds `input` to `z`, growing `out` as needed, until it is consumed (and, for a flush, until
/// everything is out).
fn deflate(
    z: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> Option<()> {
    if input.is_empty() && matches!(flush, FlushCompress::None) {
        return Some(());
    }
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(out.capacity().max(1024));
        }
        let before = z.total_in();
        let status = z.compress_vec(input, out, flush).ok()?;
        input = &input[(z.total_in() - before) as usize..];
        // Flushed once the compressor stops short of filling `out`.
        let done = match flush {
            FlushCompress::Full => input.is_empty() && out.len() < out.capacity(),
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => input.is_empty(),
        };
        if done {
            return Some(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::family::FamilyBuilder;
    use crate::exposition::metric::{def, labels};

    labels!(pub struct N { n });
    def!(SERIES, "test_series", Gauge, N, "A test series.");
    def!(OTHER, "test_other", Gauge, N, "Another test series.");

    fn text_of(exposition: &Exposition) -> String {
        exposition
            .chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect()
    }

    fn snapshot(series: usize, value: f64) -> Snapshot {
        let mut b = FamilyBuilder::new(&SERIES);
        for i in 0..series {
            b.add(&N { n: &i.to_string() }, value);
        }
        let mut families = Vec::new();
        b.finish(&mut families);
        Snapshot {
            families,
            tracked: vec![],
        }
    }

    fn gunzip(exposition: &Exposition) -> String {
        use std::io::Read;
        let gzip: Vec<u8> = exposition.gzip.iter().flatten().copied().collect();
        let mut unzipped = String::new();
        // One member: a reader of the first member only (as curl is) reads it all.
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_string(&mut unzipped)
            .expect("gzip");
        unzipped
    }

    fn rebuilds(hub: &MetricsHub) -> f64 {
        hub.self_metrics()
            .gather()
            .iter()
            .find(|f| f.name() == "aws_workflow_exporter_exposition_rebuilds_total")
            .map(|f| f.get_metric()[0].get_counter().get_value())
            .unwrap_or(0.0)
    }

    #[test]
    fn a_slow_rebuild_never_publishes_over_a_newer_one() {
        let hub = Arc::new(MetricsHub::new(Arc::new(SelfMetrics::new())));
        // A publishes a large snapshot and assembles (slow to compress); B publishes a small
        // one for the same source while A is still assembling. B's is the newer: the
        // exposition must end with it.
        let slow = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                hub.publish("s", "t", snapshot(200_000, 1.0));
                hub.rebuild();
            })
        };
        // Wait until an assembly is under way, without sleeping.
        while hub.shared.rebuilding.try_lock().is_ok() && !slow.is_finished() {
            std::hint::spin_loop();
        }
        hub.publish("s", "t", snapshot(1, 2.0));
        let flushed = hub.flush();
        slow.join().expect("slow publisher");
        for exposition in [flushed, hub.current()] {
            let text = text_of(&exposition);
            assert!(
                text.contains("test_series{n=\"0\"} 2"),
                "the newer snapshot is served"
            );
            assert!(!text.contains("n=\"1\""), "the older snapshot is gone");
        }
    }

    #[test]
    fn a_family_several_targets_publish_has_one_header_and_gzip_is_the_same_text() {
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        hub.publish("s", "a", snapshot(1, 1.0));
        hub.publish("s", "b", snapshot(2, 3.0));
        let exposition = hub.flush();
        let text = text_of(&exposition);
        assert_eq!(text.matches("# TYPE test_series gauge\n").count(), 1);
        assert_eq!(text.matches("# HELP test_series ").count(), 1);
        assert_eq!(text.matches("\ntest_series{").count(), 3, "{text}");
        assert_eq!(gunzip(&exposition), text);
    }

    #[test]
    fn a_republish_replaces_only_its_part_and_keeps_the_family_whole() {
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        hub.publish("s", "a", snapshot(2, 1.0));
        hub.publish("s", "b", snapshot(3, 5.0));
        let before = hub.flush();
        hub.publish("s", "a", snapshot(1, 7.0));
        let after = hub.flush();
        let text = text_of(&after);
        assert_eq!(text.matches("# TYPE test_series gauge\n").count(), 1);
        assert_eq!(text.matches("# HELP test_series ").count(), 1);
        // a's new series, then b's, under the one header, before the exporter's own metrics.
        let family = text
            .split("# TYPE test_series gauge\n")
            .nth(1)
            .and_then(|rest| rest.split("# HELP").next())
            .expect("the family");
        assert_eq!(
            family,
            "test_series{n=\"0\"} 7\ntest_series{n=\"0\"} 5\ntest_series{n=\"1\"} 5\ntest_series{n=\"2\"} 5\n"
        );
        assert_eq!(gunzip(&after), text);
        // The gzip header, then pieces: the family header, a's part, b's part, the exporter's
        // own metrics; then the trailer. b's piece is the one compressed for the first
        // exposition, a's is new.
        assert_eq!(before.gzip.len(), 6);
        assert_eq!(after.gzip.len(), 6);
        assert_eq!(
            before.gzip[1].as_ptr(),
            after.gzip[1].as_ptr(),
            "header reused"
        );
        assert_ne!(before.gzip[2], after.gzip[2], "a recompressed");
        assert_eq!(
            before.gzip[3].as_ptr(),
            after.gzip[3].as_ptr(),
            "b untouched"
        );
        assert!(after.covers > before.covers);
    }

    #[test]
    fn an_accounts_own_series_are_compressed_again_only_when_they_changed() {
        let metrics = Arc::new(SelfMetrics::new());
        let hub = MetricsHub::new(metrics.clone());
        let call = |account: &str, outcome: &str| {
            metrics.accounts().record_call(
                "states",
                "ListExecutions",
                outcome,
                (account, "r"),
                None,
            )
        };
        call("111111111111", "ok");
        call("222222222222", "ok");
        hub.publish("s", "a", snapshot(1, 1.0));
        let before = hub.flush();
        call("222222222222", "throttled");
        hub.publish("s", "a", snapshot(1, 2.0));
        let after = hub.flush();
        let text = text_of(&after);
        assert_eq!(gunzip(&after), text);
        let family = "aws_workflow_exporter_api_requests_total";
        assert_eq!(
            text.matches(&format!("# TYPE {family} counter\n")).count(),
            1
        );
        assert_eq!(text.matches(&format!("\n{family}{{")).count(), 3, "{text}");
        // Pieces: the gzip header; api_requests_total's header and the two accounts' parts;
        // test_series' header and a's part; the process-wide metrics; the trailer.
        let piece = |e: &Exposition, i: usize| e.gzip[i].as_ptr();
        assert_eq!(after.gzip.len(), 8);
        assert_eq!(
            piece(&before, 2),
            piece(&after, 2),
            "the first account's part is kept"
        );
        assert_ne!(
            piece(&before, 3),
            piece(&after, 3),
            "the second account's changed"
        );
    }

    #[test]
    fn a_republished_family_with_the_same_text_keeps_its_deflate_piece() {
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        let two = |series: f64, other: f64| {
            let mut s = snapshot(2, series);
            let mut b = FamilyBuilder::new(&OTHER);
            b.add(&N { n: "0" }, other);
            b.finish(&mut s.families);
            s
        };
        hub.publish("s", "a", two(1.0, 1.0));
        let before = hub.flush();
        // test_series changes (to text of the same length), test_other does not.
        hub.publish("s", "a", two(2.0, 1.0));
        let after = hub.flush();
        let text = text_of(&after);
        assert!(text.contains("test_series{n=\"1\"} 2\n"), "{text}");
        assert_eq!(gunzip(&after), text);
        // Pieces: the gzip header; test_other's header and part; test_series' header and
        // part; the process-wide metrics; the trailer.
        let piece = |e: &Exposition, i: usize| e.gzip[i].as_ptr();
        assert_eq!(after.gzip.len(), 7);
        assert_eq!(piece(&before, 2), piece(&after, 2), "test_other kept");
        assert_ne!(
            piece(&before, 4),
            piece(&after, 4),
            "test_series compressed again"
        );
    }

    #[test]
    fn a_removed_part_leaves_the_exposition() {
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        hub.publish("s", "a", snapshot(1, 1.0));
        hub.publish("s", "b", snapshot(1, 2.0));
        hub.flush();
        hub.remove("s", "a");
        let exposition = hub.flush();
        let text = text_of(&exposition);
        assert_eq!(text.matches("\ntest_series{").count(), 1, "{text}");
        assert!(text.contains("test_series{n=\"0\"} 2\n"));
        assert_eq!(gunzip(&exposition), text);
    }

    #[test]
    fn publishes_together_are_assembled_once_in_the_background() {
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        let at_start = rebuilds(&hub);
        for t in 0..200 {
            hub.publish("s", &t.to_string(), snapshot(1, t as f64));
        }
        let last = hub.last_publish();
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub.current().covers < last {
            assert!(
                Instant::now() < deadline,
                "the assembler never showed the publishes"
            );
            std::thread::yield_now();
        }
        let exposition = hub.current();
        assert_eq!(text_of(&exposition).matches("\ntest_series{").count(), 200);
        assert_eq!(gunzip(&exposition), text_of(&exposition));
        // 200 publishes within the coalescing wait: one assembly, two if the first began
        // while they were still arriving (counted from the next exposition on: read it live).
        let assembled = rebuilds(&hub) - at_start;
        assert!((1.0..=2.0).contains(&assembled), "{assembled} assemblies");
    }
}
