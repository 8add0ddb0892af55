//! The master key that seals stored provider keys (API.md "CLI"):
//! `GATEHOUSE_MASTER_KEY` (64 hex digits or base64 of 32 bytes), else the
//! file `master.key` in the home, created 0600 at first start. It never
//! enters the store. A rotation writes the new key to `master.key.new`,
//! re-seals every stored profile in one write, then renames the file over
//! the old one; a start that finds `master.key.new` (a rotation cut short)
//! keeps whichever of the two opens the stored profiles.

use crate::home;
use gatehouse_actors::gateway::actor::unopenable;
use gatehouse_actors::model::GatewayItem;
use gatehouse_actors::secrets::MasterKey;
use std::path::{Path, PathBuf};

pub const ENV_VAR: &str = "GATEHOUSE_MASTER_KEY";

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env,
    File(PathBuf),
    /// Given by the embedding program.
    Given,
}

fn file_of(home: &Path) -> PathBuf {
    home.join("master.key")
}

fn pending_of(home: &Path) -> PathBuf {
    home.join("master.key.new")
}

fn read_key(path: &Path) -> Result<MasterKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the master key file {}: {e}", path.display()))?;
    MasterKey::parse(&text).map_err(|e| format!("the master key file {}: {e}", path.display()))
}

/// The master key for a start, checked against the stored profiles: an
/// error (naming the key's source) when stored profiles exist that do not
/// open with it. `env` is `GATEHOUSE_MASTER_KEY`'s value.
pub fn load(
    env: Option<String>,
    home: Option<&Path>,
    stored: &[GatewayItem],
) -> Result<Option<(MasterKey, Source)>, String> {
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        let key = MasterKey::parse(&text).map_err(|e| format!("{ENV_VAR}: {e}"))?;
        check(&key, stored, &format!("the master key in {ENV_VAR}"))?;
        return Ok(Some((key, Source::Env)));
    }
    let Some(home) = home else {
        return match unopenable(stored, None).first() {
            Some(_) => Err(format!(
                "stored provider keys exist but no master key was given: set {ENV_VAR}"
            )),
            None => Ok(None),
        };
    };
    let file = file_of(home);
    let pending = pending_of(home);
    if pending.exists() {
        let new = read_key(&pending)?;
        if unopenable(stored, Some(&new)).is_empty() && !stored.is_empty() {
            std::fs::rename(&pending, &file)
                .map_err(|e| format!("finishing a master key rotation: {e}"))?;
            tracing::warn!("finished a master key rotation that was cut short");
            return Ok(Some((new, Source::File(file))));
        }
        let _ = std::fs::remove_file(&pending);
    }
    if file.exists() {
        let key = read_key(&file)?;
        check(
            &key,
            stored,
            &format!("the master key file {}", file.display()),
        )?;
        return Ok(Some((key, Source::File(file))));
    }
    if !unopenable(stored, None).is_empty() {
        return Err(format!(
            "stored provider keys exist but the master key file {} is missing: restore it or set {ENV_VAR}",
            file.display()
        ));
    }
    let (key, text) = MasterKey::generate();
    home::prepare(home).map_err(|e| format!("home directory {}: {e}", home.display()))?;
    home::write_secret(&file, format!("{text}\n").as_bytes())
        .map_err(|e| format!("creating the master key file {}: {e}", file.display()))?;
    tracing::info!(path = %file.display(), "created a new master key for stored provider keys");
    Ok(Some((key, Source::File(file))))
}

fn check(key: &MasterKey, stored: &[GatewayItem], what: &str) -> Result<(), String> {
    let bad = unopenable(stored, Some(key));
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} stored provider key(s) (e.g. the profile {}) do not open with {what}: give the master key they were stored with",
        bad.len(),
        bad[0]
    ))
}

/// Writes a rotation's new key where the next start finds it: the pending
/// file (renamed over the old one by [`finish_rotation`]).
pub fn begin_rotation(source: &Source, text: &str) -> Result<(), String> {
    if let Source::File(file) = source {
        let pending = file.with_file_name("master.key.new");
        home::write_secret(&pending, format!("{text}\n").as_bytes())
            .map_err(|e| format!("writing {}: {e}", pending.display()))?;
    }
    Ok(())
}

pub fn finish_rotation(source: &Source) -> Result<(), String> {
    if let Source::File(file) = source {
        let pending = file.with_file_name("master.key.new");
        std::fs::rename(&pending, file)
            .map_err(|e| format!("replacing {}: {e}", file.display()))?;
    }
    Ok(())
}

pub fn abandon_rotation(source: &Source) {
    if let Source::File(file) = source {
        let _ = std::fs::remove_file(file.with_file_name("master.key.new"));
    }
}
