//! Writing output files safely: atomically, without ever replacing a file `leaky` did not
//! mean to replace, and without leaving temporary files behind.
//!
//! [`write_atomic`] is what every output of the `leaky` command goes through (checkpoints,
//! `--json`, `--out`, reports):
//!
//! | what is at the path            | what happens                                                         |
//! |--------------------------------|----------------------------------------------------------------------|
//! | nothing, or a regular file     | a temporary file in the same directory is written, fsynced, renamed over the path, and the directory is fsynced: a crash leaves the old file or the new one, never a truncated one. An existing file keeps its permissions. |
//! | a symbolic link                | the link is **followed**: its target is replaced atomically as above and the link itself stays a link (as `sed -i --follow-symlinks` does). A dangling link creates its target. |
//! | a device, FIFO or socket       | written through in place (so `--json /dev/null` or `--json /dev/stdout` work and the device node is never replaced). Opening a FIFO waits for a reader, as a shell redirect does. |
//! | a directory                    | an error, nothing written                                            |
//!
//! Temporary files are named `.NAME.tmp-PID-N` next to the target. One is removed when
//! writing or renaming it fails; and when the process is interrupted, a handler installed
//! with [`install_cleanup_handler`] removes any still open before the process ends by the
//! signal (SIGINT, SIGTERM, SIGHUP). A `SIGKILL` cannot be caught: its temporary file stays,
//! and is only ever a dot-file next to the target, never the target itself.
//!
//! Such an orphan is removed by the next atomic write to the same target (on Linux), when
//! all of these hold, and left alone otherwise:
//!
//! - its name is exactly `.NAME.tmp-PID-N` for this target's `NAME` (PID and N decimal,
//!   as written here), so no other target's file and no file of another program is touched;
//! - it is a regular file owned by the user running `leaky`;
//! - no process `PID` is running: `/proc/PID` does not exist (where `/proc` is not mounted,
//!   nothing is removed);
//! - it was last modified more than [`STALE_TEMP_GRACE`] ago: a process writing it from
//!   another PID namespace (a container) or another host (a shared file system) cannot be
//!   seen in this `/proc`, but keeps the file's modification time fresh while it writes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Temporary files being written now; removed by the cleanup handler on a signal.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Symbolic links followed at most this many times (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the lock leaves the list itself intact.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Write `bytes` to `path` so that the path holds either its old content or all of
/// `bytes`, never a mix or a truncated file; see the module docs for symlinks, devices and
/// FIFOs. Errors are the OS errors, with the temporary file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = resolve_symlinks(path)?;
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => {
            Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", target.display())))
        }
        Ok(m) if !m.is_file() => write_through(&target, bytes),
        Ok(m) => replace(&target, bytes, Some(m.permissions())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => replace(&target, bytes, None),
        Err(e) => Err(e),
    }
}

/// The path a chain of symbolic links at `path` ends at (relative links resolved against
/// the directory of the link). `path` itself when it is not a link or does not exist.
fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_SYMLINK_HOPS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p)?;
                p = if link.is_absolute() { link } else { parent_dir(&p).join(link) };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A device, FIFO or socket: write into it without truncating or replacing anything.
fn write_through(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

/// The atomic replacement of a regular file (or creation of a new one).
fn replace(path: &Path, bytes: &[u8], perms: Option<std::fs::Permissions>) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no file name", path.display())))?;
    remove_stale_temp_files(dir, name);
    let (mut f, tmp) = create_temp(dir, name)?;
    let result = (|| {
        if let Some(p) = perms {
            f.set_permissions(p)?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    let mut list = pending();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    list.retain(|p| p != &tmp);
    result
}

/// Create a new temporary file `.NAME.tmp-PID-N` in `dir`, registered for the signal
/// handler. A file that already has the name (an orphan of an earlier process that had this
/// PID) is left alone and the next N is tried.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(File, PathBuf)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut last = None;
    for _ in 0..100 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
        // Registered before it exists, so a signal between creation and registration cannot
        // leave it behind; removing a file that does not exist yet is harmless.
        pending().push(tmp.clone());
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) => {
                // Not ours: it must not be removed by the handler or by the caller.
                pending().retain(|p| p != &tmp);
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// How long an orphaned temporary file must have been left unmodified before
/// [`write_atomic`] removes it (see the module docs).
pub const STALE_TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `Some(PID)` when `file` is exactly `.{target}.tmp-PID-N` with PID and N written as
/// `format!("{}")` writes a `u32` and a `usize` (no sign, no leading zero).
fn temp_file_pid(file: &str, target: &str) -> Option<u32> {
    let rest = file.strip_prefix('.')?.strip_prefix(target)?.strip_prefix(".tmp-")?;
    let (pid, n) = rest.split_once('-')?;
    let canonical =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !(canonical(pid) && canonical(n) && n.parse::<usize>().is_ok()) {
        return None;
    }
    pid.parse().ok()
}

/// Remove the temporary files of earlier writes to `dir/name` that were killed with no
/// chance to clean up (the conditions are in the module docs). Best effort: any error
/// (an unreadable directory, a file that vanished) leaves things as they are.
fn remove_stale_temp_files(dir: &Path, name: &std::ffi::OsStr) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Names that are not UTF-8 are written with replacement characters, which more than
        // one target could share: skip them rather than risk another target's file.
        let Some(target) = name.to_str() else { return };
        // Where /proc is not mounted, a missing /proc/PID says nothing about PID.
        let Ok(me) = std::fs::metadata("/proc/self") else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(pid) = file.to_str().and_then(|f| temp_file_pid(f, target)) else { continue };
            let Ok(m) = entry.path().symlink_metadata() else { continue };
            let idle = m.modified().ok().and_then(|t| now.duration_since(t).ok());
            let dead = matches!(
                std::fs::symlink_metadata(format!("/proc/{pid}")),
                Err(e) if e.kind() == io::ErrorKind::NotFound
            );
            if m.is_file() && m.uid() == me.uid() && dead && idle.is_some_and(|d| d > STALE_TEMP_GRACE) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, name);
}

/// fsync a directory so that a rename in it survives a crash. Platforms that cannot open a
/// directory for syncing (Windows) skip it.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => match d.sync_all() {
            // Some file systems refuse fsync on a directory; the rename itself is done.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput || e.raw_os_error() == Some(22) => Ok(()),
            r => r,
        },
        Err(_) if cfg!(windows) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove every temporary file [`write_atomic`] has open now. Called by the handler of
/// [`install_cleanup_handler`]; safe to call at any time (a write in progress then fails).
pub fn remove_pending_temp_files() {
    for p in pending().drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

/// Install handlers for SIGINT, SIGTERM and SIGHUP (Unix) that remove the temporary files
/// of writes in progress and then end the process as the signal would have (so the exit
/// status still says "killed by SIGINT"). Call once, early in `main`; a library user who
/// has signal handling of their own can call [`remove_pending_temp_files`] from it instead.
/// On other platforms this does nothing.
pub fn install_cleanup_handler() -> io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new().name("leaky-signals".into()).spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // Hold the list while exiting so no new temporary file starts meanwhile.
                let mut list = pending();
                for p in list.drain(..) {
                    let _ = std::fs::remove_file(p);
                }
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                // The default action of these three signals ends the process; should it
                // not have, exit with the shell's code for a signal death.
                std::process::exit(128 + sig);
            }
        })?;
    }
    Ok(())
}

/// Check, before any work starts, that `write_atomic(path, ..)` can succeed: the path has
/// a file name, is not a directory, its directory exists and a file can be created in it
/// (for a new or regular file; symlinks are followed; devices and FIFOs are only checked
/// to exist). `what` names the option in the message, e.g. `--json`. The probe file is
/// removed again.
pub fn check_output_path(path: &Path, what: &str) -> Result<(), String> {
    let shown = path.display();
    let target = resolve_symlinks(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => return Err(format!("{what} {shown}: is a directory, expected a file path")),
        Ok(m) if !m.is_file() => return Ok(()),
        _ => {}
    }
    if target.file_name().is_none() {
        return Err(format!("{what} {shown}: has no file name"));
    }
    let dir = parent_dir(&target);
    if !dir.is_dir() {
        return Err(format!("{what} {shown}: the directory {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".leaky-write-test-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{what} {shown}: cannot create a file in {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn new_and_existing_regular_files_are_replaced_whole() {
        let dir = TempDir::new("io-regular");
        let p = dir.path().join("out.json");
        write_atomic(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn permissions_of_an_existing_file_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("io-perm");
        let p = dir.write("x.txt", b"old");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_and_stay_links() {
        let dir = TempDir::new("io-link");
        let real = dir.write("real.json", b"old");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap(); // relative link
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A dangling link creates its target.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("created.txt"), &dangling).unwrap();
        write_atomic(&dangling, b"made").unwrap();
        assert_eq!(std::fs::read(dir.path().join("created.txt")).unwrap(), b"made");
        // A loop is an error, not a hang.
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let e = write_atomic(&a, b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic links"), "{e}");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_through_not_replaced() {
        write_atomic(Path::new("/dev/null"), b"discarded").unwrap();
        let m = std::fs::symlink_metadata("/dev/null").unwrap();
        assert!(!m.is_file(), "/dev/null was replaced by a regular file");
        // A full device: the error comes back, nothing is left anywhere.
        if Path::new("/dev/full").exists() {
            assert!(write_atomic(Path::new("/dev/full"), b"x").is_err());
        }
    }

    #[test]
    fn directories_and_missing_directories_are_errors_without_leftovers() {
        let dir = TempDir::new("io-dir");
        let e = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(write_atomic(&dir.path().join("missing/x.json"), b"x").is_err());
        // A target that is a directory entry the rename cannot replace: a non-empty
        // directory behind a symlink is refused before a temp file is made.
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn failed_rename_removes_the_temp_file() {
        // Renaming a file over a non-empty directory fails after the temp file is written;
        // reach that path by calling `replace` directly.
        let dir = TempDir::new("io-rename");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("keep"), b"k").unwrap();
        assert!(replace(&sub, b"payload", None).is_err());
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
        assert_eq!(std::fs::read(sub.join("keep")).unwrap(), b"k");
        assert!(!pending().iter().any(|p| p.starts_with(dir.path())));
    }

    /// A child process (this test binary, re-run) installs the handler,
    /// has a temporary file pending, and gets SIGTERM; it must die by SIGTERM with the file
    /// gone.
    #[cfg(unix)]
    #[test]
    fn sigterm_removes_pending_temp_files_and_still_kills() {
        use signal_hook::consts::SIGTERM;
        use std::os::unix::process::ExitStatusExt;
        const CHILD: &str = "LEAKY_TEST_SIGNAL_CHILD_DIR";
        if let Ok(dir) = std::env::var(CHILD) {
            install_cleanup_handler().unwrap();
            let tmp = Path::new(&dir).join(".out.json.tmp-child");
            std::fs::write(&tmp, b"partial").unwrap();
            pending().push(tmp);
            signal_hook::low_level::raise(SIGTERM).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(20));
            panic!("still alive 20 s after SIGTERM");
        }
        let dir = TempDir::new("io-signal");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "io::tests::sigterm_removes_pending_temp_files_and_still_kills", "--test-threads=1"])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(SIGTERM), "{status:?}");
        assert!(!dir.path().join(".out.json.tmp-child").exists());
    }

    #[test]
    fn temp_file_names_match_exactly() {
        assert_eq!(temp_file_pid(".out.json.tmp-123-0", "out.json"), Some(123));
        assert_eq!(temp_file_pid(".out.json.tmp-7-42", "out.json"), Some(7));
        for (file, target) in [
            (".out.json.tmp-123-0", "out"),
            (".out.json.tmp-123-0", "json"),
            ("out.json.tmp-123-0", "out.json"),
            (".out.json.tmp-123", "out.json"),
            (".out.json.tmp-123-", "out.json"),
            (".out.json.tmp--0", "out.json"),
            (".out.json.tmp-0123-0", "out.json"),
            (".out.json.tmp-123-00", "out.json"),
            (".out.json.tmp-+123-0", "out.json"),
            (".out.json.tmp-12a-0", "out.json"),
            (".out.json.tmp-123-0.bak", "out.json"),
            (".out.json.tmp-123-0-1", "out.json"),
            (".out.json.tmp-99999999999-0", "out.json"),
            (".out.jsonx.tmp-123-0", "out.json"),
            (".out.json.tmp-123-0 ", "out.json"),
        ] {
            assert_eq!(temp_file_pid(file, target), None, "{file} for {target}");
        }
        // The temp file of a target whose name itself looks like a temp file is its own.
        assert_eq!(temp_file_pid(".x.tmp-1-2.tmp-3-4", "x.tmp-1-2"), Some(3));
        assert_eq!(temp_file_pid(".x.tmp-1-2.tmp-3-4", "x"), None);
    }

    /// An orphan of a killed writer (`kill -9`) is removed by the next write to the same
    /// target; every file that is not exactly such an orphan stays.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_next_write_removes_orphans_of_dead_writers_only() {
        use std::time::{Duration, SystemTime};
        // Above Linux's PID_MAX_LIMIT (2^22): never a running process.
        const DEAD: u32 = (1 << 22) + 1;
        let me = std::process::id();
        let dir = TempDir::new("io-orphans");
        let old = SystemTime::now() - Duration::from_secs(3600);
        let make = |name: &str, mtime: SystemTime| {
            let p = dir.write(name, b"partial");
            File::options().write(true).open(&p).unwrap().set_modified(mtime).unwrap();
        };
        let orphan = format!(".out.json.tmp-{DEAD}-0");
        let orphan2 = format!(".out.json.tmp-{DEAD}-17");
        make(&orphan, old);
        make(&orphan2, old);
        // This process is alive: its own names stay, and the write picks a free one.
        for n in 0..50 {
            make(&format!(".out.json.tmp-{me}-{n}"), old);
        }
        let keep = [
            ".out.json.tmp-1-0".to_string(),     // so is PID 1 (init)
            format!(".other.json.tmp-{DEAD}-0"), // another target's
            format!(".out.json.tmp-{DEAD}-0.keep"),
            format!(".out.json.tmp-0{DEAD}-0"),
            format!("out.json.tmp-{DEAD}-0"),
            format!(".out.json.tmp-{DEAD}-x"),
        ];
        for k in &keep {
            make(k, old);
        }
        // Dead, but modified a moment ago: perhaps a writer this /proc cannot see.
        let fresh = format!(".out.json.tmp-{DEAD}-1");
        make(&fresh, SystemTime::now());
        // A directory with an orphan's name is not a file to remove.
        let subdir = format!(".out.json.tmp-{DEAD}-2");
        std::fs::create_dir(dir.path().join(&subdir)).unwrap();

        write_atomic(&dir.path().join("out.json"), b"complete").unwrap();
        assert_eq!(std::fs::read(dir.path().join("out.json")).unwrap(), b"complete");
        let mut left = leftovers(dir.path());
        left.sort();
        let mine = (0..50).map(|n| format!(".out.json.tmp-{me}-{n}"));
        let mut want: Vec<String> = keep.iter().cloned().chain([fresh, subdir]).chain(mine).collect();
        want.sort();
        assert_eq!(left, want, "{orphan} and {orphan2} should be gone, nothing else");
        // Every kept file still holds what it held.
        for k in &keep {
            assert_eq!(std::fs::read(dir.path().join(k)).unwrap(), b"partial", "{k}");
        }
    }

    #[test]
    fn output_paths_are_checked_before_work() {
        let dir = TempDir::new("io-check");
        assert_eq!(check_output_path(&dir.path().join("ok.json"), "--json"), Ok(()));
        let e = check_output_path(&dir.path().join("missing/x.json"), "--json").unwrap_err();
        assert!(e.starts_with("--json ") && e.contains("does not exist"), "{e}");
        let e = check_output_path(dir.path(), "--out").unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        #[cfg(unix)]
        assert_eq!(check_output_path(Path::new("/dev/null"), "--json"), Ok(()));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the probe file was left");
    }
}
