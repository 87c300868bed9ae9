//! The file-state check of DESIGN.md "Binlog file states": is a stored binlog file SUCC
//! (complete and intact) or FAIL, and why.
//!
//! # What a good file looks like
//!
//! A binlog file is the 4-byte magic `fe 62 69 6e` and then events framed by their 19-byte
//! headers (see the crate root). The check walks the file once, in bounded memory
//! (a 1 MiB read buffer plus the largest event), computing the SHA-256 of all its bytes
//! in the same pass, and verifies:
//!
//! - the magic, and that the first event is a FORMAT_DESCRIPTION (FDE);
//! - that the FDE's own bytes cannot switch the CRC checks off: whether it carries a
//!   checksum is read from its own CRC32 first (see [`FormatDescription::parse`]), a
//!   version that does not parse is damage, an FDE announcing no checksums is
//!   contradicted by a valid CRC32 on the event after it, and, where capture saw the
//!   primary stream the file, the FDE must name the same algorithm and version
//!   ([`CheckOptions::expected_format`]);
//! - every event's CRC32 when the FDE announces CRC32 (mysql-server
//!   `Log_event_footer::event_checksum_test`); the FDE's own CRC whenever it has one (its
//!   trailing CRC32 verifies, or the server version writes one: MySQL >= 5.6.1, MariaDB
//!   >= 5.3), computed with `LOG_EVENT_BINLOG_IN_USE_F` cleared;
//! - framing: no event is cut off by the end of the file, no event_size is out of range;
//! - positions are contiguous: each event's log_pos equals its end offset (modulo 2^32),
//!   except log_pos 0, which MariaDB >= 11.4 writes inside transactions and servers write
//!   on artificial events;
//! - the bodies this crate decodes are well-formed: FDE, ROTATE, GTID, QUERY (a corrupt
//!   QUERY body is found even in files without checksums);
//! - optionally, that the last event is ROTATE or STOP (a closed file) and that the size
//!   equals the primary's `SHOW BINARY LOGS` size.
//!
//! Relay logs: a replica's relay log contains, after its own FDE, the primary's ROTATE
//! (log_pos 0) and the primary's FDE, and then the primary's events, whose log_pos count
//! in the primary's file. A FORMAT_DESCRIPTION that directly follows a ROTATE with
//! log_pos 0 is therefore accepted as relay-log style ([`CheckReport::relay_log`]); it
//! switches the checksum algorithm for the events after it, and positions are then only
//! checked for events of the relay log's own server_id. A later FDE in any other place is
//! a problem. A primary's binlog never contains a second FDE, so callers checking a
//! primary's file may treat `relay_log` as a failure.
//!
//! Files whose FDE has `LOG_EVENT_BINLOG_IN_USE_F` set were copied while the server had
//! them open: [`CheckReport::in_use_flag`] says so, and the caller may then not require
//! a terminal event.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::EventError;
use crate::fde::FormatDescription;
use crate::format::{event_type, BINLOG_MAGIC};
use crate::gtid::{parse_gtid, Gtid};
use crate::header::{stored_and_computed_crc, ChecksumAlg, EventHeader};
use crate::reader::{read_full, EventReader};
use crate::rotate::{parse_rotate, Rotate};
use crate::txn::TxnTracker;

/// Read buffer of the walk, bytes.
const READ_BUF: usize = 1 << 20;

/// At most this many problems are listed; further ones are summarised in one entry.
pub const MAX_PROBLEMS: usize = 100;

/// What [`check_file`] / [`check_reader`] require beyond the intrinsic checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// The last event must be ROTATE or STOP (the file was closed).
    pub require_terminal: bool,
    /// The primary's `SHOW BINARY LOGS` size of the file in bytes, while it still lists it.
    pub expected_size: Option<u64>,
    /// What the capture saw of the primary when it wrote the file (its
    /// FORMAT_DESCRIPTION as streamed, before it reached the disk); the stored file's
    /// first FORMAT_DESCRIPTION must agree with it.
    pub expected_format: Option<ExpectedFormat>,
}

/// The primary's binlog format as capture saw it: `binlog_checksum` and the server
/// version of the file's FORMAT_DESCRIPTION as it came off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFormat {
    /// The checksum algorithm of the file's events.
    pub checksum_alg: ChecksumAlg,
    /// The FORMAT_DESCRIPTION's server version string, e.g. "10.11.6-MariaDB-log".
    pub server_version: String,
}

/// Kind of a [`Problem`], for callers and tests that react to specific failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The file does not start with the binlog magic (or is shorter than it).
    BadMagic,
    /// The file ends inside an event (or inside a header).
    Truncated,
    /// An event_size field is out of range: the framing is lost from there.
    BadEventSize,
    /// The first event is not a FORMAT_DESCRIPTION, or there is no event at all.
    NoFormatDescription,
    /// A FORMAT_DESCRIPTION in a place where neither binlogs nor relay logs have one.
    UnexpectedFormatDescription,
    /// A stored CRC32 does not match the event's bytes.
    ChecksumMismatch,
    /// An event's log_pos is not its end offset.
    PositionMismatch,
    /// An event body that this crate decodes is malformed (FDE, ROTATE, GTID, QUERY).
    CorruptEvent,
    /// The last event is not ROTATE or STOP although [`CheckOptions::require_terminal`].
    NoTerminalEvent,
    /// The size differs from [`CheckOptions::expected_size`].
    SizeMismatch,
    /// The FORMAT_DESCRIPTION announces no checksums while the event after it carries a
    /// valid CRC32, or it disagrees with what the capture knew of the primary
    /// ([`CheckOptions::expected_format`]): the FORMAT_DESCRIPTION is damaged.
    FormatMismatch,
    /// More than [`MAX_PROBLEMS`] problems; the rest are not listed.
    TooManyProblems,
}

/// One thing wrong with a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// File offset, bytes: of the event concerned, or where the file ends.
    pub offset: u64,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// Human-readable description including the offset, e.g. "CRC32 mismatch in QUERY
    /// event at offset 1234 (stored 0x..., computed 0x...)".
    pub what: String,
}

/// Result of checking one file.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// File size, bytes.
    pub size: u64,
    /// Number of complete events (the FDE included).
    pub events: u64,
    /// SHA-256 of all bytes of the file, lowercase hex.
    pub sha256_hex: String,
    /// Server version from the first FDE.
    pub server_version: Option<String>,
    /// Checksum algorithm announced by the first FDE.
    pub checksum_alg: Option<ChecksumAlg>,
    /// The first FDE has `LOG_EVENT_BINLOG_IN_USE_F`: the file was copied while open.
    pub in_use_flag: bool,
    /// Timestamp of the first event with a non-zero one, unix seconds.
    pub first_event_time: Option<u32>,
    /// Timestamp of the last event with a non-zero one, unix seconds. Not necessarily the
    /// largest: timestamps are the server clock's and can go backwards (the corpus has
    /// MySQL 8.0.31 files whose STOP is hours older than their FDE).
    pub last_event_time: Option<u32>,
    /// GTID of the first GTID event (MariaDB or MySQL; anonymous ones are not GTIDs).
    pub first_gtid: Option<Gtid>,
    /// GTID of the last GTID event.
    pub last_gtid: Option<Gtid>,
    /// Transactions completed in the file, as [`crate::TxnTracker`] counts them.
    pub transactions: u64,
    /// Type of the last complete event.
    pub last_event_type: Option<u8>,
    /// Events whose CRC32 was verified (the FDE counts when it carries a valid CRC, even
    /// with checksums off).
    pub crc_verified: u64,
    /// The file has relay-log style FDEs after a ROTATE with log_pos 0 (see module doc).
    pub relay_log: bool,
    /// Everything found wrong, in file order (at most [`MAX_PROBLEMS`] + 1 entries).
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// True when no problem was found (the SUCC state).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// True when some problem is of `kind`.
    pub fn has_problem(&self, kind: ProblemKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }

    /// One-line summary for the catalog `info` column: "ok: 1234 events, ends with
    /// ROTATE", or the count and the first three problems with their offsets.
    pub fn info(&self) -> String {
        if self.is_ok() {
            let last = self.last_event_type.map_or("nothing", event_type::name);
            let mut s = format!("ok: {} events, ends with {last}", self.events);
            if self.in_use_flag {
                s.push_str(", in-use flag set");
            }
            if self.relay_log {
                s.push_str(", relay log");
            }
            return s;
        }
        let n = self.problems.len();
        let listed: Vec<&str> = self
            .problems
            .iter()
            .take(3)
            .map(|p| p.what.as_str())
            .collect();
        let mut s = format!(
            "{n} problem{}: {}",
            if n == 1 { "" } else { "s" },
            listed.join("; ")
        );
        if n > 3 {
            s.push_str("; ...");
        }
        s
    }
}

/// Counts and hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = buf.get(..n).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "reader returned too many bytes")
        })?;
        self.hasher.update(data);
        self.count += n as u64;
        Ok(n)
    }
}

/// State of one walk.
struct Walk {
    report: CheckReport,
    fde: Option<FormatDescription>,
    /// server_id of the first FDE: the writer of the file.
    own_server_id: Option<u32>,
    prev_was_rotate_pos0: bool,
    last_event_offset: Option<u64>,
    tracker: TxnTracker,
    /// Offset of an FDE that announced no checksums, until the event after it showed
    /// whether it carries a CRC32 anyway.
    off_fde_unconfirmed: Option<u64>,
    /// [`CheckOptions::expected_format`].
    expected_format: Option<ExpectedFormat>,
}

impl Walk {
    fn problem(&mut self, offset: u64, kind: ProblemKind, what: String) {
        let problems = &mut self.report.problems;
        if problems.len() < MAX_PROBLEMS {
            problems.push(Problem { offset, kind, what });
        } else if problems.len() == MAX_PROBLEMS {
            problems.push(Problem {
                offset,
                kind: ProblemKind::TooManyProblems,
                what: format!("more than {MAX_PROBLEMS} problems; the rest from offset {offset} are not listed"),
            });
        }
    }

    /// Checks the event's own CRC32: counts it when it verifies, records the problem
    /// otherwise. `zero_ok` accepts a stored 0 (see the FDE case). Returns whether it is ok.
    fn verify_crc(&mut self, offset: u64, h: &EventHeader, ev: &[u8], zero_ok: bool) -> bool {
        match stored_and_computed_crc(h, ev) {
            Ok((s, c)) if s == c => {
                self.report.crc_verified += 1;
                true
            }
            Ok((0, _)) if zero_ok => true,
            Ok((s, c)) => {
                self.crc_problem(offset, h, s, c);
                false
            }
            Err(e) => {
                self.corrupt(offset, h, &e);
                false
            }
        }
    }

    fn crc_problem(&mut self, offset: u64, h: &EventHeader, stored: u32, computed: u32) {
        self.problem(
            offset,
            ProblemKind::ChecksumMismatch,
            format!(
                "CRC32 mismatch in {} event at offset {offset} (stored {stored:#010x}, computed {computed:#010x})",
                event_type::name(h.type_code)
            ),
        );
    }

    fn corrupt(&mut self, offset: u64, h: &EventHeader, e: &EventError) {
        self.problem(
            offset,
            ProblemKind::CorruptEvent,
            format!(
                "corrupt {} event at offset {offset}: {}",
                event_type::name(h.type_code),
                e.root()
            ),
        );
    }

    /// Checks one complete event.
    fn event(&mut self, offset: u64, h: &EventHeader, ev: &[u8]) {
        let r = &mut self.report;
        r.events += 1;
        if h.timestamp != 0 {
            r.first_event_time.get_or_insert(h.timestamp);
            r.last_event_time = Some(h.timestamp);
        }
        let first_event = r.events == 1;
        let mut crc_ok = true;

        if h.type_code == event_type::FORMAT_DESCRIPTION {
            crc_ok = self.format_description(offset, h, ev);
        } else {
            if first_event {
                self.problem(
                    offset,
                    ProblemKind::NoFormatDescription,
                    format!(
                        "first event at offset {offset} is {}, not FORMAT_DESCRIPTION",
                        event_type::name(h.type_code)
                    ),
                );
            }
            if self.fde.as_ref().map(|f| f.checksum_alg) == Some(ChecksumAlg::Crc32) {
                crc_ok = self.verify_crc(offset, h, ev, false);
            } else if let Some(fde_offset) = self.off_fde_unconfirmed.take() {
                self.confirm_no_checksums(fde_offset, offset, h, ev);
            }
        }

        // Positions: log_pos 0 is allowed; in a relay log the primary's events carry the
        // primary's positions.
        let foreign = self.report.relay_log && Some(h.server_id) != self.own_server_id;
        if h.log_pos != 0 && !foreign && h.log_pos != h.expected_log_pos(offset) {
            self.problem(
                offset,
                ProblemKind::PositionMismatch,
                format!(
                    "log_pos {} of {} event at offset {offset} is not its end offset {}",
                    h.log_pos,
                    event_type::name(h.type_code),
                    offset.saturating_add(u64::from(h.event_size))
                ),
            );
        }

        // Bodies (skipped when the CRC already failed: the bytes are known bad).
        if crc_ok {
            if let Some(fde) = self.fde.take() {
                self.bodies(offset, h, ev, &fde);
                self.fde = Some(fde);
            }
        }

        self.prev_was_rotate_pos0 = h.type_code == event_type::ROTATE && h.log_pos == 0;
        self.report.last_event_type = Some(h.type_code);
        self.last_event_offset = Some(offset);
    }

    /// Handles a FORMAT_DESCRIPTION; returns false when its CRC failed.
    fn format_description(&mut self, offset: u64, h: &EventHeader, ev: &[u8]) -> bool {
        let fde = match FormatDescription::parse(ev) {
            Ok(f) => f,
            Err(e) => {
                self.corrupt(offset, h, &e);
                return false;
            }
        };
        // A checksum-aware FDE heading a file without checksums may carry 0 instead of a
        // CRC ("(A) == 0, (V) == 0" in mysql-server log_event.cc).
        let crc_ok = !fde.has_checksum_field()
            || self.verify_crc(offset, h, ev, fde.checksum_alg == ChecksumAlg::Off);
        self.off_fde_unconfirmed = (fde.checksum_alg == ChecksumAlg::Off).then_some(offset);
        if self.own_server_id.is_none() {
            if let Some(want) = self.expected_format.take() {
                self.compare_expected(offset, &fde, &want);
            }
            let r = &mut self.report;
            r.server_version = Some(fde.server_version.clone());
            r.checksum_alg = Some(fde.checksum_alg);
            r.in_use_flag = h.is_in_use() && r.events == 1;
            self.own_server_id = Some(h.server_id);
        } else if self.prev_was_rotate_pos0 {
            self.report.relay_log = true;
        } else {
            self.problem(
                offset,
                ProblemKind::UnexpectedFormatDescription,
                format!(
                    "FORMAT_DESCRIPTION at offset {offset} after the first one, not after a relay-log ROTATE"
                ),
            );
        }
        self.fde = Some(fde);
        crc_ok
    }

    /// The first event after an FDE that announced no checksums: if its last 4 bytes are
    /// its CRC32 anyway (2^-32 by chance), the FDE lied, most likely a damaged version
    /// string or algorithm byte, and the events' CRCs would go unchecked.
    fn confirm_no_checksums(&mut self, fde_offset: u64, offset: u64, h: &EventHeader, ev: &[u8]) {
        if let Ok((s, c)) = stored_and_computed_crc(h, ev) {
            if s == c {
                self.problem(
                    fde_offset,
                    ProblemKind::FormatMismatch,
                    format!(
                        "FORMAT_DESCRIPTION at offset {fde_offset} announces no checksums, but the {} event at offset {offset} carries a valid CRC32: the FORMAT_DESCRIPTION is damaged",
                        event_type::name(h.type_code)
                    ),
                );
            }
        }
    }

    /// The file's first FDE against what capture saw of the primary.
    fn compare_expected(&mut self, offset: u64, fde: &FormatDescription, want: &ExpectedFormat) {
        if fde.checksum_alg != want.checksum_alg {
            self.problem(
                offset,
                ProblemKind::FormatMismatch,
                format!(
                    "FORMAT_DESCRIPTION at offset {offset} announces checksum {:?}, but the primary streamed this file with {:?}",
                    fde.checksum_alg, want.checksum_alg
                ),
            );
        }
        if fde.server_version != want.server_version {
            self.problem(
                offset,
                ProblemKind::FormatMismatch,
                format!(
                    "FORMAT_DESCRIPTION at offset {offset} names server version {:?}, but the primary streamed this file as {:?}",
                    fde.server_version, want.server_version
                ),
            );
        }
    }

    fn bodies(&mut self, offset: u64, h: &EventHeader, ev: &[u8], fde: &FormatDescription) {
        let alg = fde.checksum_alg;
        if event_type::is_gtid(h.type_code) {
            // Errors are reported once, by the tracker below.
            if let Ok(Some(info)) = parse_gtid(h, ev, alg) {
                self.report
                    .first_gtid
                    .get_or_insert_with(|| info.gtid.clone());
                self.report.last_gtid = Some(info.gtid);
            }
        }
        if h.type_code == event_type::ROTATE {
            if let Err(e) = parse_rotate(ev, alg) {
                self.corrupt(offset, h, &e);
            }
        }
        match self.tracker.observe(offset, h, ev, fde) {
            Ok(Some(_)) => self.report.transactions += 1,
            Ok(None) => {}
            Err(e) => self.corrupt(offset, h, &e),
        }
    }
}

fn io_error_of(e: EventError) -> Result<EventError, io::Error> {
    match e {
        EventError::Io { source, .. } => Err(source),
        EventError::At { source, .. } if source.is_io() => io_error_of(*source),
        other => Ok(other),
    }
}

/// Walks the whole file once (buffered, bounded memory; SHA-256 of all bytes in the same
/// pass) and reports everything wrong with it; see the module documentation for the
/// checks. Errors only when the file cannot be read.
pub fn check_file(path: &Path, opts: &CheckOptions) -> io::Result<CheckReport> {
    check_reader(File::open(path)?, opts)
}

/// Same as [`check_file`] over any reader positioned at the start of the file (for tests
/// and for gzip-compressed corpus files).
pub fn check_reader<R: Read>(r: R, opts: &CheckOptions) -> io::Result<CheckReport> {
    let hashing = HashingReader {
        inner: r,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut br = BufReader::with_capacity(READ_BUF, hashing);
    let mut w = Walk::new(opts.expected_format.clone());
    w.walk(&mut br)?;
    // Hash what the walk did not consume (after a framing error or a bad magic).
    io::copy(&mut br, &mut io::sink())?;
    let hashing = br.into_inner();
    w.report.size = hashing.count;
    w.report.sha256_hex = hex::encode(hashing.hasher.finalize());
    w.whole_file_checks(opts);
    Ok(w.report)
}

impl Walk {
    /// A walk before the first byte.
    fn new(expected_format: Option<ExpectedFormat>) -> Walk {
        Walk {
            report: CheckReport {
                size: 0,
                events: 0,
                sha256_hex: String::new(),
                server_version: None,
                checksum_alg: None,
                in_use_flag: false,
                first_event_time: None,
                last_event_time: None,
                first_gtid: None,
                last_gtid: None,
                transactions: 0,
                last_event_type: None,
                crc_verified: 0,
                relay_log: false,
                problems: Vec::new(),
            },
            fde: None,
            own_server_id: None,
            prev_was_rotate_pos0: false,
            last_event_offset: None,
            tracker: TxnTracker::new(),
            off_fde_unconfirmed: None,
            expected_format,
        }
    }

    /// The magic, then every event until the end or the first framing error.
    fn walk<R: Read>(&mut self, br: &mut R) -> io::Result<()> {
        let mut magic = [0u8; 4];
        let n = read_full(br, &mut magic)?;
        if n < magic.len() {
            self.problem(
                0,
                ProblemKind::BadMagic,
                format!("file is {n} bytes, shorter than the 4-byte binlog magic at offset 0"),
            );
            return Ok(());
        }
        if magic != BINLOG_MAGIC {
            self.problem(
                0,
                ProblemKind::BadMagic,
                format!(
                    "not a binlog: offset 0 holds {} instead of the magic fe62696e",
                    hex::encode(magic)
                ),
            );
            return Ok(());
        }
        let mut reader = EventReader::new_at(br, 4);
        let mut framing_error = false;
        while let Some(item) = reader.next_event() {
            match item {
                Ok((offset, h, ev)) => self.event(offset, &h, ev),
                Err(e) => {
                    let e = io_error_of(e)?;
                    let offset = e.offset().unwrap_or(0);
                    let kind = if e.is_truncated() {
                        ProblemKind::Truncated
                    } else {
                        ProblemKind::BadEventSize
                    };
                    self.problem(offset, kind, e.to_string());
                    framing_error = true;
                }
            }
        }
        if self.report.events == 0 && !framing_error {
            self.problem(
                4,
                ProblemKind::NoFormatDescription,
                "no event after the magic".to_owned(),
            );
        }
        Ok(())
    }

    /// The checks of the whole file, once its size is known: a terminal event when
    /// required, the primary's size when given.
    fn whole_file_checks(&mut self, opts: &CheckOptions) {
        let last = self.report.last_event_type;
        if opts.require_terminal
            && self.report.events > 0
            && !matches!(last, Some(event_type::ROTATE | event_type::STOP))
        {
            let offset = self.last_event_offset.unwrap_or(self.report.size);
            self.problem(
                offset,
                ProblemKind::NoTerminalEvent,
                format!(
                    "last event is {} at offset {offset}, not ROTATE or STOP",
                    last.map_or("nothing", event_type::name)
                ),
            );
        }
        if let Some(expected) = opts.expected_size {
            let size = self.report.size;
            if size != expected {
                self.problem(
                    size.min(expected),
                    ProblemKind::SizeMismatch,
                    format!("size {size} differs from the primary's {expected}"),
                );
            }
        }
    }
}

/// Result of [`valid_prefix`].
#[derive(Clone, Debug)]
pub struct ValidPrefix {
    /// End offset of the last good event (or `start` when none after it is good), bytes:
    /// the length to truncate the file to.
    pub len: u64,
    /// Type of the last good event walked (None when none after `start` was good).
    pub last_event_type: Option<u8>,
    /// The decoded ROTATE, when the last good event is a ROTATE (the file is complete).
    pub last_rotate: Option<Rotate>,
    /// The file's FORMAT_DESCRIPTION (offset 4), when it parses and its CRC verifies.
    pub fde: Option<FormatDescription>,
}

/// True when `ev` (an FDE, parsed as `fde`) carries a valid own checksum or none.
fn fde_crc_ok(h: &EventHeader, ev: &[u8], fde: &FormatDescription) -> bool {
    if !fde.has_checksum_field() {
        return true;
    }
    match stored_and_computed_crc(h, ev) {
        Ok((s, c)) => s == c || (s == 0 && fde.checksum_alg == ChecksumAlg::Off),
        Err(_) => false,
    }
}

/// The FORMAT_DESCRIPTION at offset 4 of `file`, when it can be trusted: it parses, its
/// log_pos is 0 or its end, its own CRC32 verifies (when it has one), and, when it
/// announces no checksums, the event after it does not carry a valid CRC32 anyway (a
/// damaged version or algorithm byte would otherwise switch the CRC checks off). `None`
/// otherwise. Used by crash recovery ([`valid_prefix`]) and by whoever serves a stored
/// file (the fake primary). Errors: I/O only.
pub fn trusted_format_description(file: &mut File) -> io::Result<Option<FormatDescription>> {
    file.seek(SeekFrom::Start(4))?;
    let mut fde = None;
    {
        let mut rd = EventReader::new_at(BufReader::new(&mut *file), 4);
        match rd.next_event() {
            Some(Ok((_, h, ev))) if h.type_code == event_type::FORMAT_DESCRIPTION => {
                if let Ok(f) = FormatDescription::parse(ev) {
                    let pos_ok = h.log_pos == 0 || h.log_pos == h.expected_log_pos(4);
                    if fde_crc_ok(&h, ev, &f) && pos_ok {
                        fde = Some(f);
                    }
                }
            }
            Some(Err(e)) => {
                io_error_of(e)?;
            }
            _ => {}
        }
    }
    match fde {
        Some(f) if f.checksum_alg == ChecksumAlg::Off && events_carry_crc(file)? => Ok(None),
        other => Ok(other),
    }
}

/// True when the event after the FDE at offset 4 (which announced no checksums) ends
/// with its own valid CRC32: the FDE is then damaged (see `Walk::confirm_no_checksums`).
/// False at the end of the file or on a framing error there (the walk finds those).
fn events_carry_crc(file: &mut File) -> io::Result<bool> {
    file.seek(SeekFrom::Start(4))?;
    let mut rd = EventReader::new_at(BufReader::new(&mut *file), 4);
    if rd.next_event().is_none() {
        return Ok(false);
    }
    Ok(match rd.next_event() {
        Some(Ok((_, h, ev))) => matches!(stored_and_computed_crc(&h, ev), Ok((s, c)) if s == c),
        _ => false,
    })
}

/// Crash-recovery helper: from `start` (a known event boundary, >= 4), returns the end
/// offset of the last complete event whose header is sane, whose CRC32 verifies (alg from
/// the file's FDE at offset 4, or from a later FDE walked over) and whose log_pos, when
/// non-zero, equals its end offset; ROTATE, FDE, GTID and QUERY bodies must also parse.
/// Stops at the first event that fails, or at a partial event at the end. Also returns
/// the type of that last good event and, if it is a ROTATE, its content, and the FDE.
///
/// Meant for our own stored copies of a primary's files (relay logs would stop at the
/// primary's first event, whose log_pos counts in another file). When the FDE at offset 4
/// cannot be trusted ([`trusted_format_description`]: unreadable, bad CRC, or "no
/// checksums" contradicted by the next event) and `start` > 4, nothing after `start` can
/// be vouched for: `len` is `start` and `fde` is `None`. Errors: I/O, or `start` < 4 or beyond the end of the file (InvalidInput).
pub fn valid_prefix(path: &Path, start: u64) -> io::Result<ValidPrefix> {
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    if start < 4 || start > file_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "valid_prefix: start {start} outside 4..={file_len} of {}",
                path.display()
            ),
        ));
    }
    let fde = trusted_format_description(&mut file)?;
    let mut out = ValidPrefix {
        len: start,
        last_event_type: None,
        last_rotate: None,
        fde: fde.clone(),
    };
    // Without a trustworthy FDE only the FDE itself could be validated, and it failed.
    let Some(mut current) = fde else {
        return Ok(out);
    };
    file.seek(SeekFrom::Start(start))?;
    let mut rd = EventReader::new_at(BufReader::with_capacity(READ_BUF, &mut file), start);
    let mut tracker = TxnTracker::new();
    while let Some(item) = rd.next_event() {
        let (offset, h, ev) = match item {
            Ok(x) => x,
            Err(e) => {
                io_error_of(e)?;
                break;
            }
        };
        if h.log_pos != 0 && h.log_pos != h.expected_log_pos(offset) {
            break;
        }
        let mut rotate = None;
        if h.type_code == event_type::FORMAT_DESCRIPTION {
            match FormatDescription::parse(ev) {
                Ok(f) if fde_crc_ok(&h, ev, &f) => current = f,
                _ => break,
            }
        } else {
            if current.checksum_alg == ChecksumAlg::Crc32 {
                match stored_and_computed_crc(&h, ev) {
                    Ok((s, c)) if s == c => {}
                    _ => break,
                }
            }
            if h.type_code == event_type::ROTATE {
                match parse_rotate(ev, current.checksum_alg) {
                    Ok(r) => rotate = Some(r),
                    Err(_) => break,
                }
            }
            if tracker.observe(offset, &h, ev, &current).is_err() {
                break;
            }
        }
        out.len = offset.saturating_add(u64::from(h.event_size));
        out.last_event_type = Some(h.type_code);
        out.last_rotate = rotate;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{build_event, corpus_file, fde_event, mysql_gtid_body, query_body};
    use crate::{EventHeader, LOG_EVENT_BINLOG_IN_USE_F};
    use std::io::Write;

    fn strict() -> CheckOptions {
        CheckOptions {
            require_terminal: true,
            expected_size: None,
            expected_format: None,
        }
    }

    fn lenient() -> CheckOptions {
        CheckOptions {
            require_terminal: false,
            expected_size: None,
            expected_format: None,
        }
    }

    /// magic, FDE, GTID, BEGIN, XID, GTID, DDL, ROTATE.
    fn good_file() -> Vec<u8> {
        let mut f = BINLOG_MAGIC.to_vec();
        f.extend_from_slice(&fde_event("8.0.35", 1));
        let uuid = [9u8; 16];
        let bodies: Vec<(u8, Vec<u8>)> = vec![
            (event_type::GTID, mysql_gtid_body(uuid, 1, Some(1))),
            (event_type::QUERY, query_body("d", "BEGIN")),
            (event_type::XID, 1u64.to_le_bytes().to_vec()),
            (event_type::GTID, mysql_gtid_body(uuid, 2, Some(2))),
            (event_type::QUERY, query_body("d", "DROP TABLE t")),
            (event_type::ROTATE, {
                let mut b = 4u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"binlog.000002");
                b
            }),
        ];
        for (t, b) in bodies {
            let off = f.len() as u64;
            f.extend_from_slice(&build_event(t, 1, off, &b, ChecksumAlg::Crc32));
        }
        f
    }

    #[test]
    fn good_synthetic_file() {
        let f = good_file();
        let r = check_reader(&f[..], &strict()).unwrap();
        assert!(r.is_ok(), "{}", r.info());
        assert_eq!(r.events, 7);
        assert_eq!(r.crc_verified, 7);
        assert_eq!(r.transactions, 2);
        assert_eq!(r.size, f.len() as u64);
        assert_eq!(r.sha256_hex, hex::encode(Sha256::digest(&f)));
        assert_eq!(
            r.first_gtid.as_ref().map(|g| g.to_string()).as_deref(),
            Some("09090909-0909-0909-0909-090909090909:1")
        );
        assert_eq!(
            r.last_gtid.as_ref().map(|g| g.to_string()).as_deref(),
            Some("09090909-0909-0909-0909-090909090909:2")
        );
        assert_eq!(r.last_event_type, Some(event_type::ROTATE));
        assert_eq!(r.info(), "ok: 7 events, ends with ROTATE");
        assert!(!r.in_use_flag && !r.relay_log);

        let r = check_reader(
            &f[..],
            &CheckOptions {
                require_terminal: true,
                expected_size: Some(f.len() as u64 + 1),
                expected_format: None,
            },
        )
        .unwrap();
        assert!(r.has_problem(ProblemKind::SizeMismatch));
        assert_eq!(r.problems.len(), 1);
    }

    #[test]
    fn every_byte_change_is_found() {
        let f = good_file();
        for i in 0..f.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = f.clone();
                bad[i] ^= x;
                let r = check_reader(&bad[..], &strict()).unwrap();
                // Byte 21 bit 0 is the FDE's in-use flag, which the CRC excludes.
                if i == 21 && x == 0x01 {
                    assert!(r.is_ok() && r.in_use_flag, "{}", r.info());
                } else {
                    assert!(!r.is_ok(), "change {x:#x} at {i} not found");
                }
                assert_eq!(r.size, f.len() as u64);
            }
        }
    }

    #[test]
    fn every_truncation_is_found() {
        for data in [
            good_file(),
            corpus_file("mariadb-operator__mariadb-poc/domain_id_0/mariadb-repl-bin.000009"),
            corpus_file("blackbeam__rust_mysql_common/bug16266.000001"),
        ] {
            let full = check_reader(&data[..], &strict()).unwrap();
            assert!(full.is_ok(), "{}", full.info());
            for cut in 0..data.len() {
                let r = check_reader(&data[..cut], &strict()).unwrap();
                assert!(!r.is_ok(), "cut at {cut} passed");
                assert_eq!(r.size, cut as u64);
                let p = &r.problems[0];
                if cut < 4 {
                    assert_eq!(p.kind, ProblemKind::BadMagic);
                } else if r.has_problem(ProblemKind::Truncated) {
                    let t = r.problems.iter().find(|p| p.kind == ProblemKind::Truncated);
                    assert!(t.is_some_and(|t| t.what.starts_with("truncated at offset")));
                } else {
                    // Cut at an event boundary: only the missing terminal event (or FDE).
                    assert!(
                        r.problems.iter().all(|p| matches!(
                            p.kind,
                            ProblemKind::NoTerminalEvent | ProblemKind::NoFormatDescription
                        )),
                        "cut {cut}: {}",
                        r.info()
                    );
                }
            }
        }
    }

    #[test]
    fn crc_problem_message_and_positions() {
        let mut f = good_file();
        // Corrupt the QUERY "BEGIN" text of the second event after the FDE.
        let fde_len = fde_event("8.0.35", 1).len();
        let gtid_len = build_event(
            33,
            1,
            0,
            &mysql_gtid_body([9; 16], 1, Some(1)),
            ChecksumAlg::Crc32,
        )
        .len();
        let q_off = 4 + fde_len + gtid_len;
        let q_len = EventHeader::parse(&f[q_off..]).unwrap().event_size as usize;
        f[q_off + q_len - 6] ^= 0x20;
        let r = check_reader(&f[..], &strict()).unwrap();
        assert_eq!(r.problems.len(), 1, "{}", r.info());
        let p = &r.problems[0];
        assert_eq!(p.kind, ProblemKind::ChecksumMismatch);
        assert_eq!(p.offset, q_off as u64);
        assert!(
            p.what.starts_with(&format!(
                "CRC32 mismatch in QUERY event at offset {q_off} (stored 0x"
            )),
            "{}",
            p.what
        );
        assert!(
            r.info().starts_with("1 problem: CRC32 mismatch"),
            "{}",
            r.info()
        );

        // A wrong log_pos with a correct CRC.
        let mut f = good_file();
        let mut ev = f[q_off..q_off + q_len].to_vec();
        ev[13] ^= 1;
        crate::tests::fix_crc(&mut ev);
        f[q_off..q_off + q_len].copy_from_slice(&ev);
        let r = check_reader(&f[..], &strict()).unwrap();
        assert_eq!(r.problems.len(), 1, "{}", r.info());
        assert_eq!(r.problems[0].kind, ProblemKind::PositionMismatch);
        // log_pos 0 is fine.
        ev[13..17].copy_from_slice(&[0, 0, 0, 0]);
        crate::tests::fix_crc(&mut ev);
        f[q_off..q_off + q_len].copy_from_slice(&ev);
        let r = check_reader(&f[..], &strict()).unwrap();
        assert!(r.is_ok(), "{}", r.info());
    }

    #[test]
    fn in_use_and_structure_problems() {
        let mut f = good_file();
        f[21] |= LOG_EVENT_BINLOG_IN_USE_F as u8;
        let r = check_reader(&f[..], &strict()).unwrap();
        assert!(r.is_ok() && r.in_use_flag);
        assert!(r.info().contains("in-use"));

        let r = check_reader(&b"\xfebin"[..], &strict()).unwrap();
        assert!(r.has_problem(ProblemKind::NoFormatDescription));
        let r = check_reader(&b"PK\x03\x04rest"[..], &strict()).unwrap();
        assert_eq!(r.problems[0].kind, ProblemKind::BadMagic);
        assert_eq!(r.size, 8);

        // A second FDE not after a relay-log ROTATE.
        let mut f = good_file();
        let off = f.len() as u64;
        let mut fde2 = fde_event("8.0.35", 1);
        let mut h = EventHeader::parse(&fde2).unwrap();
        h.log_pos = (off + u64::from(h.event_size)) as u32;
        fde2[..19].copy_from_slice(&h.to_bytes());
        crate::tests::fix_crc(&mut fde2);
        f.extend_from_slice(&fde2);
        let r = check_reader(&f[..], &lenient()).unwrap();
        assert_eq!(r.problems.len(), 1, "{}", r.info());
        assert_eq!(r.problems[0].kind, ProblemKind::UnexpectedFormatDescription);
    }

    #[test]
    fn too_many_problems_are_capped() {
        let mut f = good_file();
        let off = f.len();
        let q = build_event(
            2,
            1,
            off as u64,
            &query_body("d", "DROP TABLE x"),
            ChecksumAlg::Crc32,
        );
        for _ in 0..500 {
            let mut bad = q.clone();
            bad[20] ^= 1;
            f.extend_from_slice(&bad);
        }
        let r = check_reader(&f[..], &lenient()).unwrap();
        assert_eq!(r.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(r.problems[MAX_PROBLEMS].kind, ProblemKind::TooManyProblems);
        assert_eq!(r.events, 7 + 500);
    }

    fn write_tmp(data: &[u8]) -> tempfile::NamedTempFile {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(data).unwrap();
        t.flush().unwrap();
        t
    }

    #[test]
    fn valid_prefix_cuts_at_last_good_event() {
        let f = good_file();
        let full = check_reader(&f[..], &strict()).unwrap();
        assert!(full.is_ok());
        let mut ends = vec![];
        let mut rd = EventReader::new_at_start(&f[..]).unwrap();
        while let Some(Ok((off, h, _))) = rd.next_event() {
            ends.push((off, off + u64::from(h.event_size), h.type_code));
        }
        // Whole file: ends with the ROTATE.
        let t = write_tmp(&f);
        let v = valid_prefix(t.path(), 4).unwrap();
        assert_eq!(v.len, f.len() as u64);
        assert_eq!(v.last_event_type, Some(event_type::ROTATE));
        assert_eq!(
            v.last_rotate.as_ref().map(|r| r.next_file.as_str()),
            Some("binlog.000002")
        );
        assert!(v.fde.is_some());
        // Every truncation: the last complete event's end.
        for cut in 4..f.len() {
            let t = write_tmp(&f[..cut]);
            let v = valid_prefix(t.path(), 4).unwrap();
            let want = ends
                .iter()
                .map(|e| e.1)
                .filter(|&e| e <= cut as u64)
                .max()
                .unwrap_or(4);
            assert_eq!(v.len, want, "cut {cut}");
            assert!(v.last_rotate.is_none());
        }
        // A bad CRC in the third event: stops before it, also when starting later.
        let (third, _, _) = ends[2];
        let mut bad = f.clone();
        bad[third as usize + 20] ^= 1;
        let t = write_tmp(&bad);
        let v = valid_prefix(t.path(), 4).unwrap();
        assert_eq!(v.len, third);
        assert_eq!(v.last_event_type, Some(ends[1].2));
        let v = valid_prefix(t.path(), ends[1].0).unwrap();
        assert_eq!(v.len, third);
        let v = valid_prefix(t.path(), third).unwrap();
        assert_eq!(v.len, third);
        assert_eq!(v.last_event_type, None);
        // Bad arguments.
        assert!(valid_prefix(t.path(), 3).is_err());
        assert!(valid_prefix(t.path(), f.len() as u64 + 1).is_err());
        // A broken FDE: nothing beyond start.
        let mut bad = f.clone();
        bad[30] ^= 1;
        let t = write_tmp(&bad);
        let v = valid_prefix(t.path(), 4).unwrap();
        assert_eq!(v.len, 4);
        assert!(v.fde.is_none());
    }

    #[test]
    fn check_file_on_disk() {
        let f = good_file();
        let t = write_tmp(&f);
        let r = check_file(t.path(), &strict()).unwrap();
        assert!(r.is_ok());
        assert!(check_file(Path::new("/nonexistent/binlog.000001"), &strict()).is_err());
    }

    #[test]
    fn a_trusted_format_description_is_intact_and_not_contradicted() {
        let d = tempfile::tempdir().unwrap();
        let file = |name: &str, flip: Option<(usize, u8)>| {
            let mut f = BINLOG_MAGIC.to_vec();
            f.extend_from_slice(&fde_event("8.0.35", 1));
            let at = f.len() as u64;
            f.extend_from_slice(&build_event(19, 1, at, &[7u8; 30], ChecksumAlg::Crc32));
            if let Some((i, bit)) = flip {
                f[i] ^= 1 << bit;
            }
            let p = d.path().join(name);
            std::fs::write(&p, &f).unwrap();
            File::open(&p).unwrap()
        };
        let ok = trusted_format_description(&mut file("ok", None)).unwrap();
        assert_eq!(ok.map(|f| f.checksum_alg), Some(ChecksumAlg::Crc32));
        // "8.0.35" -> "0.0.35": reads as a server without checksums, which the CRC32 on
        // the next event contradicts.
        let flipped = trusted_format_description(&mut file("version", Some((4 + 19 + 2, 3))));
        assert!(flipped.unwrap().is_none());
        // A bit of the algorithm byte: the FDE's own CRC fails.
        let fde_len = fde_event("8.0.35", 1).len();
        let alg = trusted_format_description(&mut file("alg", Some((4 + fde_len - 5, 0))));
        assert!(alg.unwrap().is_none());
    }
}
