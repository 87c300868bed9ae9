//! Classification of arriving events: which are stored, which are the primary's made-up
//! events (heartbeats, artificial ROTATE/GTID_LIST, the re-sent FDE), and where the
//! stream moves to another file; contiguity and file-name checks. Shared by capture and
//! re-pull.

use archive::local;
use binlog::HEADER_LEN;

use binlog::{self, event_type, ChecksumAlg, EventHeader, FormatDescription};

use super::error::StreamEnd;

/// The checksum algorithm an arriving event is verified with: a FORMAT_DESCRIPTION
/// carries its own; every other event follows the last FDE (or, before any, what was
/// declared with `@master_binlog_checksum`). Errors: the FORMAT_DESCRIPTION does not
/// parse.
pub(crate) fn arrival_alg(
    header: &EventHeader,
    ev: &[u8],
    current: ChecksumAlg,
) -> Result<ChecksumAlg, binlog::EventError> {
    if header.type_code == event_type::FORMAT_DESCRIPTION {
        FormatDescription::parse(ev).map(|f| f.checksum_alg)
    } else {
        Ok(current)
    }
}

/// The reader's view of where the stream is.
pub(crate) struct StreamState {
    /// File the next stored event belongs to.
    pub(crate) file: String,
    /// Offset in `file` of the next stored event.
    pub(crate) offset: u64,
    /// Whether the writer has been told to open `file`.
    pub(crate) opened: bool,
    /// Checksum algorithm of the current file.
    pub(crate) alg: ChecksumAlg,
    /// The timeline the stream's files are stored on (`file` is the server's name).
    pub(crate) timeline: u32,
}

impl StreamState {
    /// A stream that starts at `file`:`pos`; `alg` is the declared checksum algorithm.
    pub(crate) fn new(file: &str, pos: u64, alg: ChecksumAlg) -> Self {
        StreamState {
            file: file.to_owned(),
            offset: pos,
            opened: false,
            alg,
            timeline: 1,
        }
    }

    /// The stored name of the server's file `wire` on this stream's timeline.
    pub(crate) fn stored(&self, wire: &str) -> String {
        binlog::timeline_name(self.timeline, wire)
    }

    /// Offset in the current file of the next stored event.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Checksum algorithm of the current file.
    pub(crate) fn alg(&self) -> ChecksumAlg {
        self.alg
    }

    /// Moves past a stored event of `len` bytes.
    pub(crate) fn advance(&mut self, len: u64) {
        self.offset += len;
    }
}

/// What to do with an arriving event.
pub(crate) enum Action {
    /// Not part of the file (heartbeat, artificial event, re-sent FDE).
    Skip,
    /// The primary moved to another file (artificial ROTATE).
    Switch { file: String, pos: u64 },
    /// Store the event; after it, switch to the named file (a real ROTATE).
    Store { then_switch: Option<String> },
}

/// Decides whether an arriving (CRC-checked) event is stored, skipped, or moves the
/// stream to another file; checks contiguity and file names. Shared by capture and
/// re-pull.
pub(crate) fn classify_event(
    st: &mut StreamState,
    h: &EventHeader,
    ev: &[u8],
    alg: ChecksumAlg,
) -> Result<Action, StreamEnd> {
    let t = h.type_code;
    if t == event_type::HEARTBEAT || t == event_type::HEARTBEAT_V2 {
        return Ok(Action::Skip);
    }
    let artificial = h.flags & binlog::LOG_EVENT_ARTIFICIAL_F != 0;
    if t == event_type::ROTATE && (artificial || h.log_pos == 0) {
        let r = usable_rotate(st, ev, alg, "artificial ROTATE")?;
        if r.next_file == st.file && r.position == st.offset {
            return Ok(Action::Skip);
        }
        if r.next_file == st.file {
            return Err(StreamEnd::Transient(format!(
                "the primary resumed {} at {} but the archive is at {}",
                r.next_file, r.position, st.offset
            )));
        }
        st.file = r.next_file.clone();
        st.offset = r.position;
        st.opened = true;
        return Ok(Action::Switch {
            file: r.next_file,
            pos: r.position,
        });
    }
    if t == event_type::FORMAT_DESCRIPTION {
        if let Ok(f) = FormatDescription::parse(ev) {
            st.alg = f.checksum_alg;
        }
        if st.offset != 4 || h.log_pos == 0 || artificial {
            return Ok(Action::Skip);
        }
    }
    if t == event_type::MARIADB_GTID_LIST && (artificial || h.log_pos == 0) {
        return Ok(Action::Skip);
    }
    if artificial {
        return Ok(Action::Skip);
    }
    let end = st.offset + ev.len() as u64;
    if h.log_pos != 0 && u64::from(h.log_pos) != end && end <= u64::from(u32::MAX) {
        return Err(StreamEnd::NotContiguous {
            file: st.file.clone(),
            pos: st.offset,
            message: format!(
                "the stream is not contiguous: a {} event of {} bytes at {}:{} says it ends at {}; the primary skipped data (for MariaDB, is @mariadb_slave_capability honoured?)",
                event_type::name(t),
                ev.len(),
                st.file,
                st.offset,
                h.log_pos
            ),
        });
    }
    if ev.len() < HEADER_LEN {
        return Err(StreamEnd::Transient("short event".into()));
    }
    if t == event_type::ROTATE {
        let r = usable_rotate(st, ev, alg, "ROTATE")?;
        return Ok(Action::Store {
            then_switch: Some(r.next_file),
        });
    }
    Ok(Action::Store { then_switch: None })
}

/// A ROTATE (`what`: "ROTATE" or "artificial ROTATE") whose next file name can be
/// stored. Definite otherwise: a CRC-valid ROTATE that does not parse will not parse
/// after a reconnect either, and a name with a slash is never used as a path.
fn usable_rotate(
    st: &StreamState,
    ev: &[u8],
    alg: ChecksumAlg,
    what: &str,
) -> Result<binlog::Rotate, StreamEnd> {
    let r = binlog::parse_rotate(ev, alg).map_err(|e| {
        StreamEnd::Definite(format!(
            "the primary sent an unusable {what} at {}:{}: {e}",
            st.file, st.offset
        ))
    })?;
    if !local::is_safe_file_name(&r.next_file) {
        return Err(StreamEnd::Definite(format!(
            "the primary announced an unusable binlog file name {:?}",
            r.next_file
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    //! The stream classification fed with real binlogs written by MySQL 5.x–9.x and
    //! MariaDB servers (`../shared/fixtures/binlogs`), wrapped as a primary would stream
    //! them: the only way to exercise the MySQL dialect's events here, since no MySQL
    //! server can be installed. The stored bytes must equal the file's.
    use super::*;
    use crate::source::stream::going_back;
    use archive::local::LocalFiles;
    use binlog::{EventReader, BINLOG_MAGIC, LOG_EVENT_BINLOG_IN_USE_F};
    use std::path::PathBuf;

    fn corpus() -> PathBuf {
        std::env::var_os("BINLOG_CORPUS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binlogs")
            })
    }

    fn files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("corpus directory (set BINLOG_CORPUS_DIR)") {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if !p.to_string_lossy().ends_with(".md") && !p.to_string_lossy().ends_with(".gz")
            {
                out.push(p);
            }
        }
    }

    fn event(type_code: u8, flags: u16, log_pos: u32, body: &[u8], alg: ChecksumAlg) -> Vec<u8> {
        let size = HEADER_LEN + body.len() + if alg == ChecksumAlg::Crc32 { 4 } else { 0 };
        let mut e = Vec::with_capacity(size);
        e.extend_from_slice(&0u32.to_le_bytes());
        e.push(type_code);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&(size as u32).to_le_bytes());
        e.extend_from_slice(&log_pos.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        if alg == ChecksumAlg::Crc32 {
            let c = crc32fast::hash(&e);
            e.extend_from_slice(&c.to_le_bytes());
        }
        e
    }

    fn fake_rotate(name: &str, pos: u64, alg: ChecksumAlg) -> Vec<u8> {
        let mut body = pos.to_le_bytes().to_vec();
        body.extend_from_slice(name.as_bytes());
        event(
            event_type::ROTATE,
            binlog::LOG_EVENT_ARTIFICIAL_F,
            0,
            &body,
            alg,
        )
    }

    /// Events of a file: (offset, header, bytes). None if the file is not a clean
    /// single-FDE binlog with contiguous positions (relay logs, damaged files).
    fn clean_events(bytes: &[u8]) -> Option<Vec<(u64, EventHeader, Vec<u8>)>> {
        let mut r = EventReader::new_at_start(bytes).ok()?;
        let mut v = Vec::new();
        let mut fdes = 0;
        let mut alg = ChecksumAlg::Off;
        while let Some(item) = r.next_event() {
            let (off, h, ev) = item.ok()?;
            if h.type_code == event_type::FORMAT_DESCRIPTION {
                fdes += 1;
                alg = FormatDescription::parse(ev).ok()?.checksum_alg;
            }
            binlog::verify_checksum(ev, alg).ok()?;
            if h.log_pos != 0 && u64::from(h.log_pos) != off + u64::from(h.event_size) {
                return None;
            }
            v.push((off, h, ev.to_vec()));
        }
        (fdes == 1 && v.first().map(|e| e.1.type_code) == Some(event_type::FORMAT_DESCRIPTION))
            .then_some(v)
    }

    /// Runs `stream` through classify_event from `file`:`pos` and returns the bytes
    /// stored (from `pos` on).
    fn store_stream(name: &str, pos: u64, alg: ChecksumAlg, stream: &[Vec<u8>]) -> Vec<u8> {
        let mut st = StreamState {
            file: name.to_owned(),
            offset: pos,
            opened: false,
            alg,
            timeline: 1,
        };
        let mut out = Vec::new();
        for ev in stream {
            let h = EventHeader::parse(ev).unwrap();
            let a = if h.type_code == event_type::FORMAT_DESCRIPTION {
                FormatDescription::parse(ev).unwrap().checksum_alg
            } else {
                st.alg
            };
            binlog::verify_checksum(ev, a).unwrap();
            match classify_event(&mut st, &h, ev, a) {
                Ok(Action::Skip) => {}
                Ok(Action::Store { .. }) => {
                    st.offset += ev.len() as u64;
                    out.extend_from_slice(ev);
                }
                Ok(Action::Switch { file, .. }) => panic!("unexpected switch to {file}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
        out
    }

    #[test]
    fn real_binlogs_stream_into_identical_files() {
        let mut all = Vec::new();
        files(&corpus(), &mut all);
        let mut tested = 0;
        let mut mysql8 = 0;
        for path in all {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.len() < 4 || bytes[..4] != BINLOG_MAGIC {
                continue;
            }
            let Some(events) = clean_events(&bytes) else {
                continue;
            };
            let fde = FormatDescription::parse(&events[0].2).unwrap();
            let alg = fde.checksum_alg;
            let name = "binlog.000007";
            // The primary sends the FDE with LOG_EVENT_BINLOG_IN_USE_F cleared.
            let mut sent_fde = events[0].2.clone();
            sent_fde[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
            let mut expected = bytes.clone();
            expected[4 + 17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
            if fde.server_version.starts_with("8.") || fde.server_version.starts_with("9.") {
                mysql8 += 1;
            }

            // From position 4: fake ROTATE, FDE, a heartbeat, every event.
            let mut stream = vec![fake_rotate(name, 4, alg), sent_fde.clone()];
            stream.push(event(event_type::HEARTBEAT, 0, 0, name.as_bytes(), alg));
            stream.extend(events[1..].iter().map(|e| e.2.clone()));
            let mut got = BINLOG_MAGIC.to_vec();
            got.extend(store_stream(name, 4, alg, &stream));
            assert_eq!(got, expected, "{}", path.display());

            // From the middle: fake ROTATE at the offset, the re-sent FDE (log_pos 0),
            // then the events from there.
            if events.len() > 2 {
                let k = events.len() / 2;
                let off = events[k].0;
                let mut resent = sent_fde.clone();
                resent[13..17].copy_from_slice(&0u32.to_le_bytes());
                if alg == ChecksumAlg::Crc32 {
                    let n = resent.len() - 4;
                    let c = crc32fast::hash(&resent[..n]);
                    resent[n..].copy_from_slice(&c.to_le_bytes());
                }
                let mut stream = vec![fake_rotate(name, off, alg), resent];
                stream.extend(events[k..].iter().map(|e| e.2.clone()));
                let got = store_stream(name, off, alg, &stream);
                assert_eq!(
                    &got[..],
                    &expected[off as usize..],
                    "{} from {off}",
                    path.display()
                );
            }
            tested += 1;
        }
        assert!(
            tested >= 80,
            "only {tested} corpus files were clean binlogs"
        );
        assert!(mysql8 >= 20, "only {mysql8} MySQL 8/9 files");
    }

    #[test]
    fn archived_files_are_never_reopened() {
        let d = tempfile::tempdir().unwrap();
        let (store, _, _) = LocalFiles::open(d.path(), "db").unwrap();
        for n in ["b.000001", "b.000002", "b.index"] {
            std::fs::write(store.path(n), BINLOG_MAGIC).unwrap();
        }
        assert!(going_back(&store, "b.000001").is_some());
        assert!(
            going_back(&store, "b.000002").is_none(),
            "the newest file may continue"
        );
        assert!(going_back(&store, "b.000003").is_none());
        // A copied index file is not a binlog.
        let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["b.000001", "b.000002"]);
    }

    #[test]
    fn a_hole_in_the_stream_is_refused() {
        let alg = ChecksumAlg::Crc32;
        let mut st = StreamState {
            file: "b.000001".into(),
            offset: 100,
            opened: true,
            alg,
            timeline: 1,
        };
        // An event claiming to end at 1000 while it would end at 100 + its size.
        let ev = event(event_type::QUERY, 0, 1000, &[0u8; 40], alg);
        let h = EventHeader::parse(&ev).unwrap();
        assert!(matches!(
            classify_event(&mut st, &h, &ev, alg),
            Err(StreamEnd::NotContiguous { file, pos: 100, .. }) if file == "b.000001"
        ));
        // A file name with a slash is never used as a path.
        let ev = fake_rotate("../../etc/passwd", 4, alg);
        let h = EventHeader::parse(&ev).unwrap();
        assert!(matches!(
            classify_event(&mut st, &h, &ev, alg),
            Err(StreamEnd::Definite(_))
        ));
    }
}
