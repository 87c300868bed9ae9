//! `binlog-server archive ls|get|decode`: the archive store by hand, without the daemon
//! (the store and key file come from the config's `[archive]`); `binlog-server rebuild`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use archive::{fetch, objects};
use node::cli::{load_settings, runtime};

/// `binlog-server archive` sub-commands.
#[derive(Debug, Subcommand)]
pub enum ArchiveCmd {
    /// List the binlog files of a source in the archive store, with sizes and codecs.
    Ls {
        /// TOML configuration file (its `[archive]` store).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source name.
        source: String,
    },
    /// Fetch one binlog file from the archive store, decoded and checked against its
    /// manifest (size, SHA-256), into OUT (a file, or a directory to put it in).
    Get {
        /// TOML configuration file (its `[archive]` store and key file).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source name.
        source: String,
        /// Binlog file name, e.g. mysql-bin.000042.
        file: String,
        /// Where to write it.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Undo an object's codec by hand (after `aws s3 cp`): read IN (default stdin),
    /// write the plaintext to OUT (default stdout). Exit 1 means the output is not to be
    /// trusted (wrong key, damaged or cut-off object): delete it.
    Decode {
        /// The codec from the object's manifest or chunk name: none, zstd, aes-256-gcm,
        /// zstd+aes-256-gcm.
        #[arg(long)]
        codec: String,
        /// Key file for encrypted objects.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Input file (default stdin).
        input: Option<PathBuf>,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs an `archive` sub-command; exit 0 done, 1 failed, 2 bad config or arguments.
pub fn run(cmd: ArchiveCmd) -> ExitCode {
    match cmd {
        ArchiveCmd::Ls { config, source } => ls(&config, &source),
        ArchiveCmd::Get {
            config,
            source,
            file,
            out,
        } => get(&config, &source, &file, &out),
        ArchiveCmd::Decode {
            codec,
            key_file,
            input,
            out,
        } => decode(
            &codec,
            key_file.as_deref(),
            input.as_deref(),
            out.as_deref(),
        ),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("binlog-server archive: {msg}");
    ExitCode::FAILURE
}

/// The config's settings, a runtime and its archive store; the exit code on failure.
fn open(
    config: &Path,
) -> Result<
    (
        node::config::Settings,
        tokio::runtime::Runtime,
        objstore::store::Store,
    ),
    ExitCode,
> {
    let s = load_settings("binlog-server archive", config)?;
    let rt = runtime("binlog-server archive")?;
    let store = objstore::store::Store::open(&s.archive.store).map_err(fail)?;
    Ok((s, rt, store))
}

/// `binlog-server rebuild`: the service's start-up rebuild, offline, with its report.
/// Exit 0 when every source looked at is rebuilt or had nothing to rebuild, 1 on a
/// failure (the message names the source, the object and what to do), 2 bad config.
pub fn rebuild(config: &Path, only: Option<&str>) -> ExitCode {
    let s = match load_settings("binlog-server rebuild", config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if let Some(o) = only {
        if !s.sources.iter().any(|x| x.name == o) {
            eprintln!(
                "binlog-server rebuild: no source {o:?} in {}",
                config.display()
            );
            return ExitCode::from(2);
        }
    }
    if !s.archive.enabled {
        eprintln!("binlog-server rebuild: [archive] enabled = false: there is no archive store to rebuild from");
        return ExitCode::from(2);
    }
    let rt = match runtime("binlog-server rebuild") {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    let result = rt.block_on(async {
        use anyhow::Context;
        let catalog = s
            .open_catalog()
            .await
            .context("open the catalog ([catalog] url)")?;
        let index_path = s.data_dir.join("index.rocksdb");
        let index = Arc::new(archive::index::Index::open(&index_path).with_context(|| {
            format!(
                "open the index at {} (is the service running? stop it first)",
                index_path.display()
            )
        })?);
        let tier = Arc::new(
            archive::tier::ArchiveTier::open_checked(s.archive.clone())
                .await
                .context("open the archive store ([archive] store)")?,
        );
        let reader = archive::cache::ArchiveReader::new(tier.clone());
        archive::rebuild::rebuild_lost(&s, &catalog, &index, &tier, &reader, only).await
    });
    match result {
        Ok(reports) => {
            for (name, r) in reports {
                match r {
                    Some(r) => println!("{name}: {}", r.summary()),
                    None => println!(
                        "{name}: nothing to rebuild (its directory holds binlogs, the catalog \
                         has rows the store does not back, or the store holds nothing for it)"
                    ),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("binlog-server rebuild: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ls(config: &Path, source: &str) -> ExitCode {
    let (_, rt, store) = match open(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    rt.block_on(async {
        let keys = match store.list(&format!("{source}/binlogs")).await {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        let prefix = format!("{source}/binlogs/");
        let manifests = keys.iter().filter_map(|(k, _)| {
            archive::objects::whole_object_name(k.strip_prefix(&prefix)?)?
                .strip_suffix(".manifest.json")
        });
        for name in manifests {
            // A stored name: `tl<N>/<name>` on timelines N >= 2.
            let (file, epoch) = archive::objects::split_epoch(name);
            match fetch::manifest(&store, source, file, epoch).await {
                Ok(m) => println!(
                    "{}\t{} bytes\t{} stored\t{}\tsha256 {}",
                    m.file, m.size, m.stored_bytes, m.codec, m.sha256
                ),
                Err(e) => println!("{file}\t(unreadable manifest: {e})"),
            }
        }
        for (key, size) in keys.iter().filter(|(k, _)| k.contains(".chunks/")) {
            let name = key.rsplit('/').next().unwrap_or_default();
            if let Some((a, b, _, codec)) = objects::parse_chunk_name(name) {
                println!(
                    "{key}\tbytes [{a}, {b})\t{size} stored\t{codec}\t(chunk of an open file)"
                );
            }
        }
        ExitCode::SUCCESS
    })
}

fn get(config: &Path, source: &str, file: &str, out: &Path) -> ExitCode {
    let (s, rt, store) = match open(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let target = if out.is_dir() {
        out.join(file)
    } else {
        out.to_path_buf()
    };
    // A timeline's file (`tl<N>/<name>`) goes to its own directory under `out`.
    if let Some(d) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("binlog-server: create {}: {e}", d.display());
            return ExitCode::FAILURE;
        }
    }
    rt.block_on(async {
        match fetch::fetch_file(
            &store,
            s.archive.keyring.clone(),
            source,
            file,
            &target,
            fetch::Flush::Fsync,
        )
        .await
        {
            Ok(m) => {
                println!(
                    "{}\t{} bytes\tsha256 {}",
                    target.display(),
                    m.size,
                    m.sha256
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}

fn decode(
    codec: &str,
    key_file: Option<&Path>,
    input: Option<&Path>,
    out: Option<&Path>,
) -> ExitCode {
    let keyring = match key_file {
        None => objstore::keyring::Keyring::none(),
        Some(p) => match objstore::keyring::Keyring::load(p) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("binlog-server archive: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut dec = match objstore::codec::Decoder::new(codec, Arc::new(keyring)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("binlog-server archive: {e}");
            return ExitCode::from(2);
        }
    };
    let mut r: Box<dyn Read> = match input {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("{}: {e}", p.display())),
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let mut w: Box<dyn Write> = match out {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("{}: {e}", p.display())),
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut plain = Vec::new();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return fail(format!("read: {e}")),
        };
        if let Err(e) = dec.write(buf.get(..n).unwrap_or_default(), &mut plain) {
            return fail(e);
        }
        if let Err(e) = w.write_all(&plain) {
            return fail(format!("write: {e}"));
        }
        plain.clear();
    }
    if let Err(e) = dec.finish(&mut plain) {
        return fail(e);
    }
    if let Err(e) = w.write_all(&plain).and_then(|()| w.flush()) {
        return fail(format!("write: {e}"));
    }
    ExitCode::SUCCESS
}
