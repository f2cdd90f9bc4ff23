//! Files and folders only the server's user may open: the database (contacts of every
//! tenant), the linked sessions' credentials (whoever reads them is the WhatsApp account),
//! the simulated phones. Folders 0700, files 0600, set explicitly rather than left to the
//! umask: the library also runs inside other processes (tests, embedders) with their own.
//!
//! Modes are Unix's; elsewhere these are plain creates and writes.

use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and whichever of its parents are missing, each new one 0700. Folders that
/// already exist keep their mode: they may be the administrator's (`--data-dir` pointing at
/// a shared folder, the database next to other files).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(dir)
}

/// A folder that is the server's alone (its own subfolders of `--data-dir`): created like
/// [`create_private_dir_all`], and tightened to 0700 when an earlier version left it open.
/// One we may not chmod (another user's) is used as it is, with a warning that leaves its
/// path out: under `whatsapp/` the path names a session's credentials.
pub fn own_private_dir(dir: &Path) -> io::Result<()> {
    create_private_dir_all(dir)?;
    if let Err(e) = set_mode(dir, DIR_MODE) {
        tracing::warn!("⚠️ Cannot make a folder of the data dir readable by this user only: {e}");
    }
    Ok(())
}

/// [`own_private_dir`] off the async threads.
pub async fn own_private_dir_async(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || own_private_dir(&dir))
        .await
        .map_err(io::Error::other)?
}

/// Makes sure `path` exists and is 0600: created empty when missing (before a library opens
/// it with its own, wider default), tightened otherwise. Its content is never touched.
pub fn private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options.open(path)?;
    set_mode(path, FILE_MODE)
}

/// A SQLite database that only the server's user may open: [`private_file`] for the main
/// file before SQLite opens it (SQLite gives its journal, `-wal` and `-shm` files the main
/// file's mode), and those companions tightened too when an earlier version left them open.
pub fn private_sqlite_file(path: &Path) -> io::Result<()> {
    private_file(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        tighten_file(Path::new(&companion))?;
    }
    Ok(())
}

/// [`private_sqlite_file`] off the async threads.
pub async fn private_sqlite_file_async(path: &Path) -> io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || private_sqlite_file(&path))
        .await
        .map_err(io::Error::other)?
}

/// Tightens `path` to 0600 if it exists.
pub fn tighten_file(path: &Path) -> io::Result<()> {
    match set_mode(path, FILE_MODE) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Writes `bytes` to `path` (replacing what it held), readable by the server's user only.
pub async fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = private_options()
        .write(true)
        .truncate(true)
        .open(path)
        .await?;
    // A file left by an earlier version keeps its old mode through `open`.
    tighten_open_file(&f).await?;
    f.write_all(bytes).await?;
    f.flush().await
}

/// Opens `path` for appending, created 0600 when missing (and tightened when not).
pub async fn append_private(path: &Path) -> io::Result<tokio::fs::File> {
    let f = private_options().append(true).open(path).await?;
    tighten_open_file(&f).await?;
    Ok(f)
}

fn private_options() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options
}

async fn tighten_open_file(f: &tokio::fs::File) -> io::Result<()> {
    #[cfg(unix)]
    {
        let mode = f.metadata().await?.permissions().mode();
        if mode & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .await?;
        }
    }
    #[cfg(not(unix))]
    let _ = f;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if current != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn what_we_create_is_ours_alone_and_what_others_made_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();

        let deep = shared.join("a").join("b");
        create_private_dir_all(&deep).unwrap();
        assert_eq!(mode(&shared), 0o755, "an existing folder keeps its mode");
        assert_eq!(mode(&shared.join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);

        let old = shared.join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        own_private_dir_async(&old).await.unwrap();
        assert_eq!(mode(&old), 0o700, "our own folder is tightened");

        let db = deep.join("x.db");
        std::fs::write(&db, b"keep").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"keep", "content untouched");
        private_file(&deep.join("new.db")).unwrap();
        assert_eq!(mode(&deep.join("new.db")), 0o600);
        tighten_file(&deep.join("absent")).unwrap();

        let f = deep.join("f.json");
        std::fs::write(&f, b"old content that is longer").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").await.unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"new");

        let sqlite = deep.join("s.db");
        for companion in ["s.db", "s.db-wal", "s.db-shm"] {
            std::fs::write(deep.join(companion), b"").unwrap();
            std::fs::set_permissions(deep.join(companion), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        private_sqlite_file_async(&sqlite).await.unwrap();
        for companion in ["s.db", "s.db-wal", "s.db-shm"] {
            assert_eq!(mode(&deep.join(companion)), 0o600, "{companion}");
        }

        let log = deep.join("out.jsonl");
        drop(append_private(&log).await.unwrap());
        assert_eq!(mode(&log), 0o600);
    }
}
