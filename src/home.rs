//! The data directory: created 0700; secret files in it are 0600.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `GATEHOUSE_HOME`, else `~/.gatehouse`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("GATEHOUSE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    base.join(".gatehouse")
}

/// Creates the home (and parents) with mode 0700, and tightens an existing one.
pub fn prepare(home: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)?;
    restrict_dir(home)
}

pub fn restrict_dir(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Directories 0700 and files 0600 under `dir` (the store holds the
/// token-signing keys).
pub fn restrict_tree(dir: &Path) -> io::Result<()> {
    restrict_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            restrict_tree(&path)?;
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Writes a secret file with mode 0600 (never readable by others, even briefly).
pub fn write_secret(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}
