//! Files written so that they are either entirely new or untouched (checkpoints, loss curves),
//! and the checks that let a command refuse a bad output path before it does any work.
//!
//! What may be an output path:
//! - a regular file, or a path that does not exist yet in a directory that exists and can be
//!   written: the file is replaced by renaming a finished temporary file over it;
//! - a symbolic link: it is followed, and what is replaced is its target (the link stays a
//!   link), which must itself be such a path;
//! - anything else — a directory, a device such as `/dev/null`, a FIFO, a socket — is refused
//!   with a one-line error: renaming over it would replace a device with a regular file, and
//!   writing through it (a FIFO without a reader blocks for ever) is not what a checkpoint is.
//!
//! Temporary files are named `.NAME.tmp-PID-N` beside the output. A process killed while
//! writing leaves one behind; the next write of the same output removes those whose process is
//! gone (see [`remove_stale_temporaries`]).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::bail;
use crate::error::Result;

/// Temporary files this process is writing now: they are never stale, whatever their name.
static IN_PROGRESS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// What kind of thing is at a path, without following a final symbolic link.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Where writing `path` puts the file: `path` itself, or the file a symbolic link at `path`
/// (or a chain of them) points to. Refuses a path whose final component is neither a regular
/// file nor absent, a dangling link's missing directory and a link loop, with a line that names
/// `path`.
pub fn resolve_output(path: &Path) -> Result<PathBuf> {
    match resolve(path) {
        Ok(p) => Ok(p),
        Err(why) => bail!("cannot write {}: {why}", path.display()),
    }
}

/// [`resolve_output`] with the bare reason as its error.
fn resolve(path: &Path) -> std::result::Result<PathBuf, String> {
    let mut p = path.to_path_buf();
    // a chain of links longer than Linux's own limit (40) is a loop for our purposes
    for _ in 0..40 {
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e.to_string()),
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&p).map_err(|e| format!("cannot read the link: {e}"))?;
            p = match p.parent() {
                Some(dir) => dir.join(target),
                None => target,
            };
            continue;
        }
        if meta.is_file() {
            return Ok(p);
        }
        let kind = kind_of(&meta);
        return Err(if p == path {
            format!("it is {kind}, not a regular file")
        } else {
            format!(
                "it links to {}, which is {kind}, not a regular file",
                p.display()
            )
        });
    }
    Err("too many levels of symbolic links".into())
}

/// Reads a whole input file — `what` names it in errors (`dataset`, `checkpoint`) — if it is a
/// regular file (or a link to one) of at most `max_bytes`: a device such as `/dev/zero`, a FIFO
/// or a directory is refused before anything is read, and so is a file that is too large (or
/// grows past the limit while it is read).
pub fn read_input(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => bail!("cannot read {what} {}: {e}", path.display()),
    };
    if !meta.is_file() {
        bail!(
            "cannot read {what} {}: it is {}, not a regular file",
            path.display(),
            kind_of(&meta)
        );
    }
    if meta.len() > max_bytes {
        bail!(
            "{what} {} is {} bytes, more than the {} bytes ({:.0} MiB) this tool reads",
            path.display(),
            meta.len(),
            max_bytes,
            max_bytes as f64 / (1u64 << 20) as f64
        );
    }
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => bail!("cannot read {what} {}: {e}", path.display()),
    };
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = io::Read::read_to_end(&mut io::Read::take(file, max_bytes + 1), &mut bytes) {
        bail!("cannot read {what} {}: {e}", path.display());
    }
    if bytes.len() as u64 > max_bytes {
        bail!(
            "{what} {} grew past {} bytes while it was read",
            path.display(),
            max_bytes
        );
    }
    Ok(bytes)
}

/// The directory a file at `path` lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Checks, before any work, that [`write_atomic`] can write `path`: the path (or the target of
/// the link it is) is a regular file or absent, its directory exists and a file can be created
/// in it (tried for real: a temporary file is created and removed). `what` names the output in
/// the error, e.g. `checkpoint`. Returns the path that will be replaced.
pub fn check_output(path: &Path, what: &str) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        bail!("the {what} path is empty");
    }
    let target = match resolve(path) {
        Ok(t) => t,
        Err(why) => bail!("cannot write {what} {}: {why}", path.display()),
    };
    let Some(name) = target.file_name() else {
        bail!("cannot write {what} {}: not a file name", path.display());
    };
    let dir = parent_dir(&target);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "cannot write {what} {}: {} is not a directory",
            path.display(),
            dir.display()
        ),
        Err(_) => bail!(
            "cannot write {what} {}: directory {} does not exist",
            path.display(),
            dir.display()
        ),
    }
    let (tmp, file) = match create_temporary(dir, name) {
        Ok(t) => t,
        Err(e) => bail!(
            "cannot write {what} {}: cannot create a file in {}: {e}",
            path.display(),
            dir.display()
        ),
    };
    drop(file);
    let _ = fs::remove_file(&tmp);
    forget_temporary(&tmp);
    Ok(target)
}

/// Whether `a` and `b` name the same file: the same file on disk where both exist (device
/// and inode, so hard links and links of any kind are seen through), else the same absolute
/// path once each is resolved (its directory canonicalized, a symbolic link followed).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (canonical(a), canonical(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The files of one command, checked before any work: no output (`(what, path)`, e.g.
/// `("--out", …)`) may be the same file ([`same_file`]) as another output or as an input, since
/// writing it would destroy the other.
pub fn check_distinct(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    for (i, (what, out)) in outputs.iter().enumerate() {
        for (other, p) in &outputs[i + 1..] {
            if same_file(out, p) {
                bail!(
                    "{what} {} and {other} {} are the same file; give them different paths",
                    out.display(),
                    p.display()
                );
            }
        }
        for (input, p) in inputs {
            if same_file(out, p) {
                bail!(
                    "{what} {} is the same file as {input} {}, which writing it would destroy; give another path",
                    out.display(),
                    p.display()
                );
            }
        }
    }
    Ok(())
}

/// An absolute path for `p`, which need not exist: the canonical path if it does, else its
/// directory's canonical path joined with its name (a dangling link: its target's).
fn canonical(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = fs::canonicalize(p) {
        return Some(c);
    }
    let p = resolve(p).ok()?;
    let name = p.file_name()?;
    Some(fs::canonicalize(parent_dir(&p)).ok()?.join(name))
}

/// Creates a new temporary file for `name` in `dir`, and records it as in progress.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // recorded first, so that a concurrent cleanup in this process never takes it as stale
        IN_PROGRESS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(tmp.clone());
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) => {
                forget_temporary(&tmp);
                // a file of a dead process that had our PID: take the next number
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
    }
}

fn forget_temporary(tmp: &Path) {
    if let Some(set) = IN_PROGRESS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        set.remove(tmp);
    }
}

/// The PID in a temporary file name of output `name` (`.NAME.tmp-PID-N`), if it is one.
fn temporary_pid(file: &str, name: &str) -> Option<u32> {
    let rest = file.strip_prefix('.')?.strip_prefix(name)?;
    let (pid, n) = rest.strip_prefix(".tmp-")?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` may still be running. Without `/proc` (not Linux) nothing can be
/// known, and every process counts as alive, so nothing is removed.
fn may_be_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Removes the temporary files that killed writers of `name` left in `dir`: regular files named
/// `.NAME.tmp-PID-N` whose process no longer exists, or whose PID is this process's but which
/// this process is not writing (a dead process that had the same PID, as happens in
/// containers). A file of a live process is left alone, even if that PID now belongs to another
/// program: a few stale bytes are better than a write pulled from under a running save.
/// Returns how many were removed.
pub fn remove_stale_temporaries(dir: &Path, name: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| temporary_pid(f, name)) else {
            continue;
        };
        let path = entry.path();
        let stale = if pid == me {
            !IN_PROGRESS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|s| s.contains(&path))
        } else {
            !may_be_alive(pid)
        };
        let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if stale && is_file && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes a file so that it is either entirely new or untouched: `write` fills a temporary file
/// in the same directory as the file replaced (so the rename cannot cross file systems), which
/// is flushed to disk and renamed over it; the directory is then synced so the rename itself
/// survives a power cut. On any error the temporary file is removed and the old file is as it
/// was. A symbolic link's target is what is replaced; a path that is not a regular file is
/// refused (see the module's documentation). An existing file's permissions are kept.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let target = resolve_output(path)?;
    let Some(name) = target.file_name() else {
        bail!("cannot write {}: not a file name", path.display());
    };
    let dir = parent_dir(&target);
    if !dir.exists() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "cannot write {}: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    remove_stale_temporaries(dir, &name.to_string_lossy());
    let (tmp, file) = match create_temporary(dir, name) {
        Ok(t) => t,
        Err(e) => bail!("cannot write {}: {}: {e}", path.display(), dir.display()),
    };
    let result = (|| {
        if let Ok(old) = fs::metadata(&target) {
            file.set_permissions(old.permissions())?;
        }
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        forget_temporary(&tmp);
        bail!("cannot write {}: {e}", path.display());
    }
    forget_temporary(&tmp);
    // best effort: not every file system can sync a directory
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::temporary_pid;

    #[test]
    fn temporary_names_are_recognised_exactly() {
        assert_eq!(temporary_pid(".a.st.tmp-12-3", "a.st"), Some(12));
        assert_eq!(temporary_pid(".a.st.tmp-12-", "a.st"), None);
        assert_eq!(temporary_pid(".a.st.tmp--3", "a.st"), None);
        assert_eq!(temporary_pid(".a.st.tmp-1x-3", "a.st"), None);
        assert_eq!(temporary_pid(".b.st.tmp-12-3", "a.st"), None);
        assert_eq!(temporary_pid("a.st.tmp-12-3", "a.st"), None);
        assert_eq!(temporary_pid(".a.st.tmp-12-3-4", "a.st"), None);
    }
}
