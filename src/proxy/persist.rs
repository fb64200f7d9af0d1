//! The backend table on disk (`proxy.json`), written atomically (temp file, fsync, rename) so a
//! restarted proxy serves the same backends at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Listen port → backends.
pub type Saved = BTreeMap<u16, Vec<SocketAddr>>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    ports: Saved,
}

/// Read the table; `None` when there is no file yet.
pub fn load(path: &Path) -> anyhow::Result<Option<Saved>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let f: File = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if f.version != 1 {
        anyhow::bail!("{}: unknown version {}", path.display(), f.version);
    }
    Ok(Some(f.ports))
}

/// Move an unreadable table aside (`proxy.json.bad`) so that it is kept for inspection.
pub fn set_aside(path: &Path) -> Option<PathBuf> {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    std::fs::rename(path, &bad).ok().map(|_| bad)
}

/// Write the table atomically.
pub fn save(path: &Path, table: &Saved) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let body = serde_json::to_vec_pretty(&File {
        version: 1,
        ports: table.clone(),
    })
    .context("encoding the backend table")?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proxy.json");
        assert!(load(&p).unwrap().is_none());
        let mut t = Saved::new();
        t.insert(8080, vec!["127.0.0.1:3000".parse().unwrap()]);
        save(&p, &t).unwrap();
        assert_eq!(load(&p).unwrap(), Some(t));
        std::fs::write(&p, "{not json").unwrap();
        let err = format!("{:#}", load(&p).unwrap_err());
        assert!(err.contains("parsing"), "{err}");
        let bad = set_aside(&p).unwrap();
        assert!(bad.exists() && !p.exists());
    }
}
