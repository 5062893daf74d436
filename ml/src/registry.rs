//! The model registry: versioned directories on disk, `<root>/<kind>/v<N>/` with the model's
//! files and a `metadata.json` (training data range, parameters, metrics, sha256 of every
//! file), and a `promoted` pointer per kind that serving follows. A version is written
//! under a staging name and renamed into place, and the pointer is replaced by rename, so a
//! reader never sees half a model. Promotions are logged; rollback re-promotes the previous.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// What a version says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub kind: String,
    pub version: String,
    pub created_at: DateTime<Utc>,
    /// Where the training data came from (`warehouse`, a file path, `synthetic`).
    pub source: String,
    /// Earliest and latest event time in the training data.
    pub data_from: Option<DateTime<Utc>>,
    pub data_to: Option<DateTime<Utc>>,
    /// Training rows (interactions, labelled orders).
    pub rows: u64,
    pub train_secs: f64,
    pub params: serde_json::Value,
    pub metrics: BTreeMap<String, f64>,
    /// sha256 (hex) of each file of the version, by file name.
    pub files: BTreeMap<String, String>,
}

/// A version as `ml list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    pub metadata: Metadata,
    pub promoted: bool,
}

/// The registry rooted at a directory (created on first write).
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// A version being written: files go into [`Staged::dir`], then [`Registry::commit`].
#[derive(Debug)]
pub struct Staged {
    kind: String,
    dir: PathBuf,
}

impl Staged {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Left over only when training failed before commit.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fs_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// Checks that a pinned file exists and has the sha256 `want`; `missing` says how to get it.
pub fn check_pinned(path: &Path, want: &str, missing: &str) -> Result<(), Error> {
    if !path.exists() {
        return Err(Error::Io(format!(
            "{} is missing: {missing}",
            path.display()
        )));
    }
    let got = sha256_file(path)?;
    if got != want {
        return Err(Error::Integrity(format!(
            "{} has sha256 {got}, expected {want}",
            path.display()
        )));
    }
    Ok(())
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| fs_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| fs_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn check_kind(kind: &str) -> Result<(), Error> {
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return Err(Error::input(format!(
            "model kind {kind:?} must be lowercase letters"
        )));
    }
    Ok(())
}

impl Registry {
    pub fn new(root: impl Into<PathBuf>) -> Registry {
        Registry { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn kind_dir(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }

    /// Starts a new version of `kind`.
    pub fn stage(&self, kind: &str) -> Result<Staged, Error> {
        check_kind(kind)?;
        let dir = self
            .kind_dir(kind)
            .join(format!(".staging-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).map_err(|e| fs_err(&dir, e))?;
        Ok(Staged {
            kind: kind.to_string(),
            dir,
        })
    }

    /// Hashes the staged files, writes `metadata.json` and moves the version into place as
    /// the next `v<N>`. `meta.version`, `meta.kind` and `meta.files` are filled in here.
    pub fn commit(&self, staged: Staged, mut meta: Metadata) -> Result<Metadata, Error> {
        meta.kind = staged.kind.clone();
        meta.files.clear();
        for entry in walk(&staged.dir)? {
            let rel = entry
                .strip_prefix(&staged.dir)
                .map_err(|e| Error::Io(e.to_string()))?
                .to_string_lossy()
                .replace('\\', "/");
            meta.files.insert(rel, sha256_file(&entry)?);
        }
        loop {
            let n = self.versions(&staged.kind)?.last().map_or(0, |(n, _)| *n) + 1;
            meta.version = format!("v{n}");
            write_json(&staged.dir.join("metadata.json"), &meta)?;
            let target = self.kind_dir(&staged.kind).join(&meta.version);
            match std::fs::rename(&staged.dir, &target) {
                Ok(()) => break,
                // Another trainer took this number first: try the next.
                Err(_) if target.exists() => continue,
                Err(e) => return Err(fs_err(&target, e)),
            }
        }
        std::mem::forget(staged);
        Ok(meta)
    }

    /// Version numbers and names of `kind`, oldest first.
    fn versions(&self, kind: &str) -> Result<Vec<(u64, String)>, Error> {
        let dir = self.kind_dir(kind);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(fs_err(&dir, e)),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) {
                out.push((n, name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directory of a version.
    pub fn dir(&self, kind: &str, version: &str) -> PathBuf {
        self.kind_dir(kind).join(version)
    }

    pub fn metadata(&self, kind: &str, version: &str) -> Result<Metadata, Error> {
        let path = self.dir(kind, version).join("metadata.json");
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::input(format!("no version {version} of the {kind} model"))
            }
            _ => fs_err(&path, e),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    }

    /// Every version of `kind` (or of every kind), oldest first.
    pub fn list(&self, kind: Option<&str>) -> Result<Vec<Listed>, Error> {
        let kinds: Vec<String> = match kind {
            Some(k) => vec![k.to_string()],
            None => match std::fs::read_dir(&self.root) {
                Ok(e) => {
                    let mut k: Vec<String> = e
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .collect();
                    k.sort();
                    k
                }
                Err(_) => Vec::new(),
            },
        };
        let mut out = Vec::new();
        for k in kinds {
            let promoted = self.promoted(&k)?;
            for (_, v) in self.versions(&k)? {
                let metadata = self.metadata(&k, &v)?;
                out.push(Listed {
                    promoted: promoted.as_deref() == Some(v.as_str()),
                    metadata,
                });
            }
        }
        Ok(out)
    }

    /// The promoted version of `kind`, if any.
    pub fn promoted(&self, kind: &str) -> Result<Option<String>, Error> {
        let path = self.kind_dir(kind).join("promoted");
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fs_err(&path, e)),
        }
    }

    /// Checks every file of a version against the hashes in its metadata.
    pub fn verify(&self, kind: &str, version: &str) -> Result<Metadata, Error> {
        let meta = self.metadata(kind, version)?;
        let dir = self.dir(kind, version);
        for (file, hash) in &meta.files {
            let actual = sha256_file(&dir.join(file))?;
            if &actual != hash {
                return Err(Error::Integrity(format!(
                    "{kind} {version}: {file} has sha256 {actual}, its metadata says {hash}"
                )));
            }
        }
        Ok(meta)
    }

    /// Makes `version` the one serving uses (after checking its files).
    pub fn promote(&self, kind: &str, version: &str) -> Result<Metadata, Error> {
        self.promote_logged(kind, version, false)
    }

    fn promote_logged(&self, kind: &str, version: &str, rollback: bool) -> Result<Metadata, Error> {
        let meta = self.verify(kind, version)?;
        let dir = self.kind_dir(kind);
        let tmp = dir.join(format!(".promoted-{}", uuid::Uuid::now_v7()));
        std::fs::write(&tmp, version).map_err(|e| fs_err(&tmp, e))?;
        std::fs::rename(&tmp, dir.join("promoted")).map_err(|e| fs_err(&dir, e))?;
        let log = dir.join("promotions.jsonl");
        let line = serde_json::json!({"at": Utc::now(), "version": version, "rollback": rollback});
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|e| fs_err(&log, e))?;
        Ok(meta)
    }

    /// Promotes the version that was promoted before the current one. Rollbacks go on
    /// backwards: after promoting v1, v2, v3, two rollbacks give v2, then v1.
    pub fn rollback(&self, kind: &str) -> Result<Metadata, Error> {
        let log = self.kind_dir(kind).join("promotions.jsonl");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Replay the log as a stack: a promotion pushes, a rollback pops back to its version.
        let mut stack: Vec<String> = Vec::new();
        for v in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let Some(version) = v["version"].as_str() else {
                continue;
            };
            if v["rollback"].as_bool() == Some(true) {
                stack.pop();
            }
            if stack.last().map(String::as_str) != Some(version) {
                stack.push(version.to_string());
            }
        }
        let current = self.promoted(kind)?;
        while stack.last().is_some_and(|v| Some(v) == current.as_ref()) {
            stack.pop();
        }
        let previous = stack.pop().ok_or_else(|| {
            Error::input(format!(
                "the {kind} model has no earlier promotion to roll back to"
            ))
        })?;
        self.promote_logged(kind, &previous, true)
    }
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| fs_err(&d, e))? {
            let p = e.map_err(|e| fs_err(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n != "metadata.json" && n != "lock.mdb")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes JSON atomically (temp file + rename).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Io(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| fs_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| fs_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata {
            kind: String::new(),
            version: String::new(),
            created_at: Utc::now(),
            source: "test".into(),
            data_from: None,
            data_to: None,
            rows: 1,
            train_secs: 0.0,
            params: serde_json::json!({}),
            metrics: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn versions_promote_and_roll_back() {
        let root = std::env::temp_dir().join(format!("ml-reg-{}", uuid::Uuid::now_v7()));
        let reg = Registry::new(&root);
        for n in 0..3 {
            let s = reg.stage("recs").unwrap();
            std::fs::write(s.dir().join("w.bin"), [n]).unwrap();
            let m = reg.commit(s, meta()).unwrap();
            assert_eq!(m.version, format!("v{}", n + 1));
        }
        assert_eq!(reg.promoted("recs").unwrap(), None);
        assert!(reg.rollback("recs").is_err());
        reg.promote("recs", "v1").unwrap();
        reg.promote("recs", "v2").unwrap();
        assert_eq!(reg.promoted("recs").unwrap().as_deref(), Some("v2"));
        let listed = reg.list(None).unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed[1].promoted && !listed[0].promoted);
        assert_eq!(reg.rollback("recs").unwrap().version, "v1");
        assert_eq!(reg.promoted("recs").unwrap().as_deref(), Some("v1"));
        assert!(reg.rollback("recs").is_err(), "nothing before v1");
        // Rollbacks keep going back, past re-promotions of the same version.
        reg.promote("recs", "v2").unwrap();
        reg.promote("recs", "v3").unwrap();
        reg.promote("recs", "v3").unwrap();
        assert_eq!(reg.rollback("recs").unwrap().version, "v2");
        assert_eq!(reg.rollback("recs").unwrap().version, "v1");
        assert!(reg.rollback("recs").is_err());
        // A tampered file is refused.
        std::fs::write(reg.dir("recs", "v2").join("w.bin"), [9]).unwrap();
        let e = reg.promote("recs", "v2").unwrap_err().to_string();
        assert!(e.contains("sha256"), "{e}");
        assert!(
            reg.promote("recs", "v7")
                .unwrap_err()
                .to_string()
                .contains("no version v7")
        );
        // A failed training leaves nothing behind.
        drop(reg.stage("recs").unwrap());
        assert_eq!(reg.list(Some("recs")).unwrap().len(), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
