//! The binlog store of one source: `<data_dir>/<source>/`.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/<source>/mysql-bin.000041     closed files, byte-identical to the primary's
//! <data_dir>/<source>/mysql-bin.000042     the ACTIVE file: a durable prefix of the primary's
//! <data_dir>/<source>/binlog-server.state  control file (JSON): active file + durable length
//! <data_dir>/<source>/*.repull             temporary files of a re-pull (deleted on start)
//! ```
//!
//! File names are the primary's; their order is the numeric extension (`.000042`).
//!
//! ## Timelines
//!
//! A source follows its primary through failovers (`urls`): each server capture
//! switches to starts a new timeline (`binlog::split_timeline`), whose files live in a
//! directory of their own, byte-identical to that server's, so two servers' files of
//! the same name never meet:
//!
//! ```text
//! <data_dir>/<source>/mysql-bin.000041       timeline 1 (the first server)
//! <data_dir>/<source>/tl2/mysql-bin.000007   timeline 2: stored name "tl2/mysql-bin.000007"
//! ```
//!
//! The active file is the last by `binlog::binlog_order` (newest timeline first); the
//! control file, in the source directory, names it by its stored name.
//!
//! # Durability
//!
//! The active file is written in place (append only). Bytes become *durable* when the
//! writer has called `fdatasync` on the file; only then is the new durable length written
//! to the control file (a 512-byte JSON record with a CRC32 check value, overwritten in
//! place; replaced atomically through `binlog-server.state.tmp` and fsynced when a file
//! is opened or closed and at shut-down), and only then are the transactions that end inside the durable prefix
//! given to the index. A closed file is fsynced before the next file is created, and a
//! new file's directory entry is fsynced before its first event counts as durable.
//!
//! # Recovery after a crash
//!
//! [`LocalFiles::open`] takes the last file by order; from the control file's durable
//! length (or from position 4 when the control file names another file or is missing)
//! it walks forward over complete events whose header is sane, whose CRC32 verifies and
//! whose `log_pos` equals their end offset, and truncates the file after the last such
//! event (a torn tail: half an event, or bytes that never reached the disk). Capture
//! then resumes from exactly that file and offset, so nothing is lost (the primary sends
//! the tail again) and nothing is duplicated.

use binlog::{binlog_order, binlog_seq};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use binlog::check::{valid_prefix, ValidPrefix};
use binlog::{self, BINLOG_MAGIC};

/// Name of the control file inside a source directory.
pub const CONTROL_FILE: &str = "binlog-server.state";

/// File offset of the low byte of the first FORMAT_DESCRIPTION's flags (4-byte magic +
/// 17 bytes of header before the flags).
pub const IN_USE_FLAG_OFFSET: u64 = 4 + 17;

/// Suffix of temporary re-pull files.
pub const REPULL_SUFFIX: &str = ".repull";

/// The control file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Control {
    /// Active (last) file name.
    pub file: String,
    /// Bytes of `file` known to be on disk (fsynced).
    pub durable_len: u64,
}

/// True when `name` is a plausible binlog file name coming from a primary (used before
/// it becomes a path): non-empty, at most 255 bytes, no `/`, no NUL, not starting with `.`.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && name != CONTROL_FILE
        && !name.ends_with(REPULL_SUFFIX)
        && !name.ends_with(".tmp")
}

/// True when `name` is a plausible stored name: a [`is_safe_file_name`] of the server,
/// with at most one timeline prefix `tl<N>/` (N >= 2; `binlog::split_timeline`).
pub fn is_safe_stored_name(name: &str) -> bool {
    is_safe_file_name(binlog::split_timeline(name).1)
}

/// fsyncs a directory so that created, renamed or removed entries are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` crash-safely: `path.tmp`, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// The server_id in the first event header of the binlog file at `path` (its
/// FORMAT_DESCRIPTION: the server that wrote the file); `None` when unreadable or 0.
pub fn writer_server_id(path: &Path) -> Option<u32> {
    use std::io::Read;
    let mut head = [0u8; 4 + binlog::HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    let h = binlog::EventHeader::parse(head.get(4..)?).ok()?;
    (h.server_id != 0).then_some(h.server_id)
}

/// The directory of the source directory `dir` that holds the stored file `file`: `dir`
/// itself, or its timeline's `tl<N>` (N >= 2).
pub fn dir_of_in(dir: &Path, file: &str) -> PathBuf {
    match binlog::split_timeline(file) {
        (1, _) => dir.to_path_buf(),
        (n, _) => dir.join(format!("tl{n}")),
    }
}

/// Creates the directory of the stored file `file` in the source directory `dir` (a
/// timeline's `tl<N>`, fsynced into `dir` when new) and returns it.
///
/// # Errors
///
/// The I/O error of the creation or the fsync.
pub fn prepare_dir_of(dir: &Path, file: &str) -> io::Result<PathBuf> {
    let d = dir_of_in(dir, file);
    if !d.is_dir() {
        std::fs::create_dir_all(&d)?;
        fsync_dir(dir)?;
    }
    Ok(d)
}

/// Records the stored file `file` of the source directory `dir` as its active file,
/// `len` bytes durable: the control file replaced atomically ([`write_atomic`]) and the
/// file's own directory fsynced too (a timeline's, which holds its new entry). Call
/// after the file's data are fsynced. Blocking.
///
/// # Errors
///
/// The I/O error of the write or an fsync.
pub fn record_active(dir: &Path, file: &str, len: u64) -> io::Result<()> {
    let control = Control {
        file: file.to_owned(),
        durable_len: len,
    };
    write_atomic(
        &dir.join(CONTROL_FILE),
        &serde_json::to_vec(&control).map_err(io::Error::other)?,
    )?;
    let d = dir_of_in(dir, file);
    if d != dir {
        fsync_dir(&d)?;
    }
    Ok(())
}

/// The control file of the source directory `dir`, if present, parseable and, when it
/// carries one, its check value matches (a record torn by a crash mid-write is no
/// record: recovery then validates from position 4).
pub fn read_control_in(dir: &Path) -> Option<Control> {
    use std::io::Read;
    // A record is a file name of at most 255 bytes (escaped at most 6-fold) and two
    // numbers; a larger file is not one of ours.
    const MAX_BYTES: u64 = 4096;
    let mut bytes = Vec::new();
    File::open(dir.join(CONTROL_FILE))
        .ok()?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_BYTES {
        return None;
    }
    let r: ControlRecord = serde_json::from_slice(&bytes).ok()?;
    let c = Control {
        file: r.file,
        durable_len: r.durable_len,
    };
    match r.check {
        Some(v) if v != control_check(&c) => None,
        _ => Some(c),
    }
}

/// The control file's JSON: [`Control`] and, in records written in place, `check`
/// (CRC32 of the file name's bytes and the length's 8 little-endian bytes). Records
/// written by [`write_atomic`] (and by older versions) have none.
#[derive(Serialize, Deserialize)]
struct ControlRecord {
    file: String,
    durable_len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<u32>,
}

fn control_check(c: &Control) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(c.file.as_bytes());
    h.update(&c.durable_len.to_le_bytes());
    h.finalize()
}

/// Size of a control record written in place: its JSON padded with spaces (any plain
/// file name of up to 255 bytes fits; one with many escaped characters is written
/// atomically instead), one disk sector, so a crash leaves the old record or the new
/// one, and the check value catches the rest.
const CONTROL_RECORD_BYTES: usize = 512;

/// Where capture should resume, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing archived yet: follow the configured `start`.
    Empty,
    /// Continue `file` at byte offset `pos` (the file's valid length).
    At {
        /// File name.
        file: String,
        /// Offset (>= 4).
        pos: u64,
    },
    /// The last file is complete (it ends with ROTATE): start the next one at 4.
    Next {
        /// The closed last file.
        closed: String,
        /// Name announced by its ROTATE.
        next: String,
    },
}

/// The store of one source.
#[derive(Debug)]
pub struct LocalFiles {
    dir: PathBuf,
}

impl LocalFiles {
    /// Opens (creating) `<data_dir>/<name>`, removes leftover temporary files, and
    /// recovers the last file (see the module doc). Returns the store, where to resume,
    /// and what recovery did (for the log).
    pub fn open(data_dir: &Path, name: &str) -> io::Result<(LocalFiles, Resume, Option<String>)> {
        let dir = data_dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let store = LocalFiles { dir };
        for d in timeline_dirs(&store.dir)? {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let n = entry.file_name();
                let n = n.to_string_lossy();
                if n.ends_with(REPULL_SUFFIX) || n.ends_with(".tmp") {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        let (resume, note) = store.recover()?;
        Ok((store, resume, note))
    }

    /// The source directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a binlog file in this store (a stored name: `tl<N>/` included).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The directory holding the stored file `file`: the source directory, or its
    /// timeline's (whose entries a new file's creation must fsync).
    pub fn dir_of(&self, file: &str) -> PathBuf {
        dir_of_in(&self.dir, file)
    }

    /// Binlog files present, in binlog order (timelines in order, `binlog::binlog_order`),
    /// by stored name, with their sizes (bytes).
    pub fn list(&self) -> io::Result<Vec<(String, u64)>> {
        list_binlogs(&self.dir)
    }

    /// Reads the control file, if present and parseable.
    pub fn read_control(&self) -> Option<Control> {
        read_control_in(&self.dir)
    }

    /// Records the durable length of the active file. Call only after the data's
    /// fdatasync returned, so the record never claims more than the disk holds.
    ///
    /// With `flush = false` (every sync while streaming) the record is overwritten in
    /// place, one [`CONTROL_RECORD_BYTES`] write at offset 0 without fsync (no new
    /// inode, no rename: on ext4 a rename over a file also forces the new file's data
    /// out). It is a recovery hint: after a crash it is at worst older than the truth
    /// (recovery then validates more of the file), or torn and refused by its check
    /// value, or missing (recovery validates from position 4). With `flush = true`
    /// (file switches and shut-down, each costing the disk a journal commit) it is
    /// replaced atomically and fsynced ([`write_atomic`]).
    pub fn write_control(&self, c: &Control, flush: bool) -> io::Result<()> {
        let path = self.dir.join(CONTROL_FILE);
        let record = ControlRecord {
            file: c.file.clone(),
            durable_len: c.durable_len,
            check: Some(control_check(c)),
        };
        let mut bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        // A file name whose JSON does not fit one record (escaped characters) goes the
        // atomic way too, rather than stopping capture.
        if flush || bytes.len() > CONTROL_RECORD_BYTES {
            return write_atomic(&path, &bytes);
        }
        bytes.resize(CONTROL_RECORD_BYTES, b' ');
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes, 0)?;
        if f.metadata()?.len() > CONTROL_RECORD_BYTES as u64 {
            f.set_len(CONTROL_RECORD_BYTES as u64)?;
        }
        Ok(())
    }

    fn recover(&self) -> io::Result<(Resume, Option<String>)> {
        let files = self.list()?;
        let Some((last, size)) = files.last().cloned() else {
            return Ok((Resume::Empty, None));
        };
        let path = self.path(&last);
        if size < BINLOG_MAGIC.len() as u64 {
            // Crashed while creating the file: write the magic again.
            let mut f = OpenOptions::new().write(true).truncate(true).open(&path)?;
            f.write_all(&BINLOG_MAGIC)?;
            f.sync_all()?;
            fsync_dir(&self.dir_of(&last))?;
            return Ok((
                Resume::At { file: last, pos: 4 },
                Some(format!("recreated a torn file header ({size} bytes)")),
            ));
        }
        let start = match self.read_control() {
            Some(c) if c.file == last && c.durable_len >= 4 && c.durable_len <= size => {
                c.durable_len
            }
            _ => 4,
        };
        let ValidPrefix {
            len,
            last_rotate,
            last_event_type,
            ..
        } = valid_prefix(&path, start)?;
        let mut note = None;
        let f = OpenOptions::new().write(true).open(&path)?;
        if len < size {
            f.set_len(len)?;
            note = Some(format!(
                "cut a torn tail of {} bytes off {last} (valid length {len})",
                size - len
            ));
        }
        // Bytes past the old durable length may exist only in the page cache (the
        // process died, the machine did not): make them durable before recording them.
        f.sync_all()?;
        self.write_control(
            &Control {
                file: last.clone(),
                durable_len: len,
            },
            true,
        )?;
        if last_event_type == Some(binlog::event_type::ROTATE) {
            if let Some(r) = last_rotate {
                // The ROTATE names the server's next file, on the same timeline.
                let next = binlog::timeline_name(binlog::split_timeline(&last).0, &r.next_file);
                if is_safe_file_name(&r.next_file) && next != last {
                    return Ok((Resume::Next { closed: last, next }, note));
                }
            }
        }
        Ok((
            Resume::At {
                file: last,
                pos: len,
            },
            note,
        ))
    }
}

/// `dir` and its timeline directories (`tl<N>`, N >= 2), in no particular order.
///
/// # Errors
///
/// `dir` cannot be read (a missing `dir` too).
pub fn timeline_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if binlog::timeline_dir(&name).is_some() && entry.file_type()?.is_dir() {
            v.push(entry.path());
        }
    }
    Ok(v)
}

/// The binlog files of the source directory `dir` and its timeline directories, in
/// binlog order, by stored name (`tl<N>/<name>` on timelines N >= 2), with their sizes
/// (bytes): what [`LocalFiles::list`] lists, for readers that do not open the store.
///
/// # Errors
///
/// A directory cannot be read (a missing `dir` too).
pub fn list_binlogs(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut v = Vec::new();
    for d in timeline_dirs(dir)? {
        let prefix = d
            .strip_prefix(dir)
            .ok()
            .and_then(|p| p.to_str())
            .filter(|p| !p.is_empty())
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only names with a numeric extension are binlogs (mysql-bin.000042): a
            // copied mysql-bin.index or an editor's backup must never be taken for one.
            if !is_safe_file_name(&name)
                || binlog_seq(&name).is_none()
                || !entry.file_type()?.is_file()
            {
                continue;
            }
            v.push((format!("{prefix}{name}"), entry.metadata()?.len()));
        }
    }
    v.sort_by_key(|(n, _)| binlog_order(n));
    Ok(v)
}

/// The file being appended to by the writer.
///
/// Appends go through a 1 MiB buffer (one `write` per buffer, not per event).
/// [`ActiveFile::prepare_sync`] flushes the buffer and hands out what a sync needs, so
/// the fdatasync itself can run on another thread while appends go on
/// (the syncer of `binlog_server::source::writer`); [`ActiveFile::sync`] is the blocking form. `len`
/// counts bytes appended; `requested` bytes handed to a sync; `durable` bytes known to be
/// on disk.
#[derive(Debug)]
pub struct ActiveFile {
    /// File name (the primary's).
    pub name: String,
    file: Arc<File>,
    buf: Vec<u8>,
    /// Bytes appended (buffered or written).
    pub len: u64,
    /// Bytes handed to a sync (>= durable).
    pub requested: u64,
    /// Bytes known durable.
    pub durable: u64,
    new_entry: bool,
    /// Offset up to which write-back to the disk has been started.
    kicked: u64,
}

/// What a sync of the active file needs: the file, the length it makes durable, and
/// whether the directory entry (a new file) must be synced too.
#[derive(Debug, Clone)]
pub struct SyncTicket {
    /// The file (shared with the writer).
    pub file: Arc<File>,
    /// Length that is durable once `file.sync_data()` returns.
    pub len: u64,
    /// The file was created since the last sync: fsync its directory as well.
    pub new_entry: bool,
}

/// Size of the append buffer, bytes.
const APPEND_BUFFER: usize = 1 << 20;

/// Write-back of appended bytes is started (not waited for) every this many bytes, so
/// the disk works while data streams in and each fdatasync only waits for the rest
/// (RocksDB's `bytes_per_sync` idea).
const WRITEBACK_CHUNK: u64 = 4 << 20;

impl ActiveFile {
    /// Opens `name` in `store` for appending at `pos`. A missing file is created with the
    /// 4-byte magic (then `pos` must be 4). An existing file longer than `pos` is cut to
    /// `pos` (its tail is being received again); one shorter than `pos` is an error.
    pub fn open(store: &LocalFiles, name: &str, pos: u64) -> io::Result<ActiveFile> {
        if !is_safe_stored_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("refusing binlog file name {name:?} from the primary"),
            ));
        }
        let path = store.path(name);
        let exists = path.exists();
        let dir = store.dir_of(name);
        if !exists && !dir.is_dir() {
            // A new timeline's first file: its directory's entry is made durable now.
            std::fs::create_dir(&dir)?;
            fsync_dir(store.dir())?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&path)?;
        let mut new_entry = false;
        let mut buf = Vec::with_capacity(APPEND_BUFFER);
        let mut len = pos;
        if !exists {
            if pos != 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{name} is not archived locally; it can only be started at position 4, not {pos}"
                    ),
                ));
            }
            buf.extend_from_slice(&BINLOG_MAGIC);
            len = 4;
            new_entry = true;
        } else {
            let size = f.metadata()?.len();
            if size < pos {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name} has {size} bytes locally, cannot continue at {pos}"),
                ));
            }
            if size > pos {
                f.set_len(pos)?;
            }
        }
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(if new_entry { 0 } else { pos }))?;
        let durable = if new_entry { 0 } else { pos };
        Ok(ActiveFile {
            name: name.to_owned(),
            file: Arc::new(f),
            buf,
            len,
            requested: durable,
            durable,
            new_entry,
            kicked: if new_entry { 0 } else { pos },
        })
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            (&*self.file).write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Appends bytes (buffered).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > APPEND_BUFFER {
            self.flush_buf()?;
        }
        if bytes.len() >= APPEND_BUFFER {
            (&*self.file).write_all(bytes)?;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self.len += bytes.len() as u64;
        if self.len - self.kicked >= WRITEBACK_CHUNK {
            self.flush_buf()?;
            self.start_writeback();
        }
        Ok(())
    }

    /// Asks the kernel to start writing `[kicked, len)` to the disk without waiting
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Advisory: errors surface at fdatasync.
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (
            libc::off64_t::try_from(self.kicked),
            libc::off64_t::try_from(self.len - self.kicked),
        ) else {
            return;
        };
        // SAFETY: the fd is owned by self.file and open for writing; the call only
        // initiates write-back of that range.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.kicked = self.len;
    }

    /// True when bytes were appended that no sync has been asked for yet.
    pub fn dirty(&self) -> bool {
        self.len != self.requested
    }

    /// Flushes the buffer and returns what a sync of everything appended so far needs.
    /// The caller runs `ticket.file.sync_data()` (and fsyncs the directory when
    /// `new_entry`), then calls [`ActiveFile::mark_durable`].
    pub fn prepare_sync(&mut self) -> io::Result<SyncTicket> {
        self.flush_buf()?;
        let t = SyncTicket {
            file: self.file.clone(),
            len: self.len,
            new_entry: self.new_entry,
        };
        self.new_entry = false;
        self.requested = self.len;
        Ok(t)
    }

    /// Records that a sync up to `len` completed.
    pub fn mark_durable(&mut self, len: u64) {
        self.durable = self.durable.max(len.min(self.len));
    }

    /// Sets LOG_EVENT_BINLOG_IN_USE_F in the file's FORMAT_DESCRIPTION (byte 21), as it
    /// stays on the primary's disk when the primary crashed with this file open: the
    /// primary streams the FDE with the flag cleared, so without this the archived copy
    /// of a crash-closed file would differ from the primary's in that one byte. The CRC
    /// is computed with the flag cleared, so it stays valid. Syncs.
    pub fn mark_in_use(&mut self, store: &LocalFiles) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.flush_buf()?;
        if self.len <= IN_USE_FLAG_OFFSET {
            return Ok(());
        }
        let mut b = [0u8; 1];
        self.file.read_exact_at(&mut b, IN_USE_FLAG_OFFSET)?;
        b[0] |= binlog::LOG_EVENT_BINLOG_IN_USE_F as u8;
        self.file.write_all_at(&b, IN_USE_FLAG_OFFSET)?;
        self.file.sync_data()?;
        if self.new_entry {
            fsync_dir(&store.dir_of(&self.name))?;
            self.new_entry = false;
        }
        Ok(())
    }

    /// Blocking sync: flush, fdatasync (and the directory entry of a new file).
    pub fn sync(&mut self, store: &LocalFiles) -> io::Result<()> {
        let t = self.prepare_sync()?;
        t.file.sync_data()?;
        if t.new_entry {
            fsync_dir(&store.dir_of(&self.name))?;
        }
        self.mark_durable(t.len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's server_id from a real file's first event; none from a file of the
    /// magic alone or a missing one.
    #[test]
    fn the_writer_of_a_file_is_its_first_events_server_id() {
        let dir = std::env::var_os("BINLOG_CORPUS_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binlogs"),
            PathBuf::from,
        );
        let f = dir.join("mariadb-operator__mariadb-poc/domain_id_0/mariadb-repl-bin.000005");
        let bytes = std::fs::read(&f).expect("fixture (set BINLOG_CORPUS_DIR)");
        let h = binlog::EventHeader::parse(&bytes[4..]).unwrap();
        assert_eq!(writer_server_id(&f), Some(h.server_id));
        assert!(h.server_id != 0);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m"), BINLOG_MAGIC).unwrap();
        assert_eq!(writer_server_id(&d.path().join("m")), None);
        assert_eq!(writer_server_id(&d.path().join("absent")), None);
    }

    #[test]
    fn timeline_files_list_after_the_first_and_recovery_continues_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let (store, resume, _) = LocalFiles::open(dir.path(), "db").unwrap();
        assert_eq!(resume, Resume::Empty);
        let mut a = ActiveFile::open(&store, "mysql-bin.000009", 4).unwrap();
        a.sync(&store).unwrap();
        // A new timeline's first file creates its directory.
        let mut b = ActiveFile::open(&store, "tl2/mysql-bin.000003", 4).unwrap();
        b.sync(&store).unwrap();
        assert!(dir.path().join("db/tl2/mysql-bin.000003").is_file());
        std::fs::write(dir.path().join("db/tl2/notes.txt"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("db/tl1")).unwrap();
        std::fs::write(dir.path().join("db/tl1/mysql-bin.000100"), BINLOG_MAGIC).unwrap();
        std::fs::write(dir.path().join("db/tl2/x.000001.repull"), b"x").unwrap();
        let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["mysql-bin.000009", "tl2/mysql-bin.000003"]);
        drop((a, b));
        let (_, resume, _) = LocalFiles::open(dir.path(), "db").unwrap();
        assert_eq!(
            resume,
            Resume::At {
                file: "tl2/mysql-bin.000003".into(),
                pos: 4
            }
        );
        assert!(!dir.path().join("db/tl2/x.000001.repull").exists());
        assert_eq!(store.dir_of("tl2/a.1"), dir.path().join("db/tl2"));
        assert_eq!(store.dir_of("a.1"), dir.path().join("db"));
        assert!(is_safe_stored_name("tl2/mysql-bin.000001"));
        for bad in ["tl2/../x.1", "tl2/", "tl2/tl3/x.1", "a/b.1", "tl2/.x"] {
            assert!(!is_safe_stored_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn seq_and_order() {
        assert_eq!(binlog_seq("mysql-bin.000042"), Some(42));
        assert_eq!(binlog_seq("mysql-bin"), None);
        assert_eq!(binlog_seq("a.b"), None);
        let mut v = vec!["b.000010", "b.000009", "b.1000000"];
        v.sort_by_key(|n| binlog_order(n));
        assert_eq!(v, vec!["b.000009", "b.000010", "b.1000000"]);
    }

    #[test]
    fn control_records_are_overwritten_in_place_and_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalFiles {
            dir: dir.path().to_path_buf(),
        };
        let long = Control {
            file: format!("{}.000001", "b".repeat(200)),
            durable_len: 123_456_789,
        };
        store.write_control(&long, true).expect("atomic write");
        assert_eq!(store.read_control(), Some(long));
        let short = Control {
            file: "b.000002".into(),
            durable_len: 4096,
        };
        store.write_control(&short, false).expect("in-place write");
        assert_eq!(store.read_control(), Some(short.clone()));
        let path = dir.path().join(CONTROL_FILE);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 512);
        // A record whose length was torn (a digit from another write) fails its check.
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            text.replace("\"durable_len\":4096", "\"durable_len\":4097"),
        )
        .expect("write");
        assert_eq!(store.read_control(), None);
        // A record without a check value (older versions, write_atomic callers) is read.
        std::fs::write(&path, br#"{"file":"b.000003","durable_len":8}"#).expect("write");
        assert_eq!(store.read_control().map(|c| c.durable_len), Some(8));
    }

    #[test]
    fn unsafe_names_refused() {
        for n in [
            "",
            "../x",
            "a/b",
            ".hidden",
            CONTROL_FILE,
            "x.repull",
            "a\0b",
        ] {
            assert!(!is_safe_file_name(n), "{n:?}");
        }
        assert!(is_safe_file_name("mysql-bin.000001"));
    }

    #[test]
    fn empty_store_resumes_empty() {
        let d = tempfile::tempdir().unwrap();
        let (s, r, _) = LocalFiles::open(d.path(), "db1").unwrap();
        assert_eq!(r, Resume::Empty);
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn torn_header_is_rewritten() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("db1")).unwrap();
        std::fs::write(d.path().join("db1/mysql-bin.000003"), [0xfe, b'b']).unwrap();
        let (s, r, note) = LocalFiles::open(d.path(), "db1").unwrap();
        assert_eq!(
            r,
            Resume::At {
                file: "mysql-bin.000003".into(),
                pos: 4
            }
        );
        assert!(note.is_some());
        assert_eq!(
            std::fs::read(s.path("mysql-bin.000003")).unwrap(),
            BINLOG_MAGIC
        );
    }

    #[test]
    fn active_file_append_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let (s, _, _) = LocalFiles::open(d.path(), "db1").unwrap();
        let mut a = ActiveFile::open(&s, "b.000001", 4).unwrap();
        a.append(b"0123456789").unwrap();
        assert!(a.dirty());
        a.sync(&s).unwrap();
        assert!(!a.dirty());
        drop(a);
        assert_eq!(std::fs::metadata(s.path("b.000001")).unwrap().len(), 14);
        let a = ActiveFile::open(&s, "b.000001", 9).unwrap();
        assert_eq!(a.len, 9);
        drop(a);
        assert_eq!(std::fs::metadata(s.path("b.000001")).unwrap().len(), 9);
        assert!(ActiveFile::open(&s, "b.000001", 20).is_err());
        assert!(ActiveFile::open(&s, "b.000002", 8).is_err());
        assert!(ActiveFile::open(&s, "../evil", 4).is_err());
    }
}
