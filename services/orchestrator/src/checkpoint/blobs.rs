//! Content-addressed file store: a checkpoint refers to file contents by sha256, so a workspace
//! whose files mostly did not change costs a hash per file and a copy only of what is new.
//!
//! A blob is written to `tmp/`, fsynced, then renamed to `blobs/ab/cdef…`. The name is the
//! digest of what was actually copied (hashed during the copy), so a file that changes between
//! hashing and copying cannot produce a blob whose content disagrees with its name. Two writers
//! of the same blob both rename identical content onto the same name, which is harmless.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::{StateError, create_temp, io_err, is_temp_name, sync_dir};

/// Read buffer of hashing and copying: large enough that a 20 MB file is a few hundred reads.
const CHUNK: usize = 256 * 1024;

/// Temp files older than this are leftovers of a crash; younger ones may be a write in progress.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A sha256 digest; lowercase hex in JSON and on disk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = StateError;

    fn from_str(s: &str) -> Result<Digest, StateError> {
        let mut out = [0u8; 32];
        // Uppercase hex would name a different blob file: only the canonical form is accepted.
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(StateError::BadDigest(s.to_owned()));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| StateError::BadDigest(s.to_owned()))?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a [`Blobs`] store did since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobStats {
    /// Blobs newly added to the store.
    pub blobs_written: u64,
    /// Bytes of those blobs.
    pub bytes_written: u64,
    /// Bytes read to compute digests (copies included).
    pub bytes_hashed: u64,
}

/// What [`Blobs::gc`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcReport {
    pub removed: u64,
    pub bytes_freed: u64,
    pub kept: u64,
    pub stale_temps_removed: u64,
}

/// The blob store under `<root>/blobs`.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
    sync: bool,
    blobs_written: AtomicU64,
    bytes_written: AtomicU64,
    bytes_hashed: AtomicU64,
    /// Digests seen stored by this process: a snapshot checks every trusted file's blob, and a
    /// stat per file per phase was a third of a phase's overhead in a 1,000-file workspace.
    /// Only [`Blobs::gc`] removes blobs, and it forgets them here too.
    known: std::sync::Mutex<HashSet<Digest>>,
}

impl Blobs {
    /// Opens (creating when missing) the store of state directory `root`. New blobs are fsynced,
    /// so a checkpoint that refers to them never outlives them.
    pub fn open(root: &Path) -> Result<Blobs, StateError> {
        let dir = root.join("blobs");
        let tmp = root.join("tmp");
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        fs::create_dir_all(&tmp).map_err(io_err("create directory", &tmp))?;
        Ok(Blobs {
            dir,
            tmp,
            sync: true,
            blobs_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            bytes_hashed: AtomicU64::new(0),
            known: std::sync::Mutex::new(HashSet::new()),
        })
    }

    /// Without fsync of new blobs: for scratch stores (dry runs, replays) whose loss is harmless.
    pub fn without_sync(mut self) -> Blobs {
        self.sync = false;
        self
    }

    pub fn stats(&self) -> BlobStats {
        BlobStats {
            blobs_written: self.blobs_written.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            bytes_hashed: self.bytes_hashed.load(Ordering::Relaxed),
        }
    }

    /// Where the blob of `digest` lives (whether or not it is there).
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.contains(digest) {
            return true;
        }
        let stored = self.path_of(digest).is_file();
        if stored {
            known.insert(*digest);
        }
        stored
    }

    /// The path of a stored blob, or [`StateError::MissingBlob`].
    pub fn get(&self, digest: &Digest) -> Result<PathBuf, StateError> {
        let path = self.path_of(digest);
        if path.is_file() { Ok(path) } else { Err(StateError::MissingBlob { digest: *digest, path }) }
    }

    /// Hashes `path` (streaming) and stores its content unless the store already has it.
    pub fn put_file(&self, path: &Path) -> Result<Digest, StateError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let (digest, len) = hash_reader(file, None).map_err(io_err("read", path))?;
        self.bytes_hashed.fetch_add(len, Ordering::Relaxed);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let file = File::open(path).map_err(io_err("open", path))?;
        self.store(file, path)
    }

    /// Stores `bytes` (e.g. a recorded LLM response) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StateError> {
        let digest = Digest::of_bytes(bytes);
        self.bytes_hashed.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.contains(&digest) {
            return Ok(digest);
        }
        self.store(bytes, Path::new("<bytes>"))
    }

    /// Reads a blob fully into memory.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StateError> {
        let path = self.get(digest)?;
        fs::read(&path).map_err(io_err("read", &path))
    }

    /// A blob as text when it is small (at most `max_bytes`), valid UTF-8 and free of NUL bytes:
    /// what is worth showing as a line diff. None otherwise.
    pub fn read_text(&self, digest: &Digest, max_bytes: u64) -> Result<Option<String>, StateError> {
        let path = self.get(digest)?;
        let len = fs::metadata(&path).map_err(io_err("stat", &path))?.len();
        if len > max_bytes {
            return Ok(None);
        }
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        if bytes.contains(&0) {
            return Ok(None);
        }
        Ok(String::from_utf8(bytes).ok())
    }

    /// Re-hashes a stored blob and checks it against its name.
    pub fn verify(&self, digest: &Digest) -> Result<(), StateError> {
        let path = self.get(digest)?;
        let file = File::open(&path).map_err(io_err("open", &path))?;
        let (actual, _) = hash_reader(file, None).map_err(io_err("read", &path))?;
        if actual == *digest {
            Ok(())
        } else {
            Err(StateError::CorruptBlob { detail: format!("its content hashes to {actual}"), path })
        }
    }

    /// Removes every blob not in `live`, and temp files a crash left behind. The caller ensures
    /// no snapshot runs meanwhile: a snapshot may rely on a blob it saw before it is removed.
    pub fn gc(&self, live: impl IntoIterator<Item = Digest>) -> Result<GcReport, StateError> {
        let live: HashSet<Digest> = live.into_iter().collect();
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        let mut report = GcReport::default();
        for fan in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let fan = fan.map_err(io_err("list", &self.dir))?;
            let fan_path = fan.path();
            let Some(prefix) = fan.file_name().to_str().map(str::to_owned) else { continue };
            if prefix.len() != 2 || !fan_path.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&fan_path).map_err(io_err("list", &fan_path))? {
                let entry = entry.map_err(io_err("list", &fan_path))?;
                let Some(rest) = entry.file_name().to_str().map(str::to_owned) else { continue };
                let Ok(digest) = format!("{prefix}{rest}").parse::<Digest>() else { continue };
                if live.contains(&digest) {
                    report.kept += 1;
                    continue;
                }
                let path = entry.path();
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        report.removed += 1;
                        report.bytes_freed += len;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
        }
        let now = SystemTime::now();
        for entry in fs::read_dir(&self.tmp).map_err(io_err("list", &self.tmp))? {
            let entry = entry.map_err(io_err("list", &self.tmp))?;
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP);
            let is_temp = entry.file_name().to_str().is_some_and(is_temp_name);
            if is_temp && stale && fs::remove_file(entry.path()).is_ok() {
                report.stale_temps_removed += 1;
            }
        }
        Ok(report)
    }

    /// Copies `src` into a temp file while hashing it, then renames it into place under the
    /// digest of what was copied.
    fn store(&self, src: impl Read, what: &Path) -> Result<Digest, StateError> {
        let (tmp, mut file) = create_temp(&self.tmp, "blob")?;
        let copied = hash_reader(src, Some(&mut file)).and_then(|r| {
            if self.sync {
                file.sync_all()?;
            }
            Ok(r)
        });
        drop(file);
        let (digest, len) = match copied {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("copy into the blob store", what)(e));
            }
        };
        self.bytes_hashed.fetch_add(len, Ordering::Relaxed);
        let dest = self.path_of(&digest);
        if dest.is_file() {
            let _ = fs::remove_file(&tmp);
            return Ok(digest);
        }
        let fan = dest.parent().unwrap_or(&self.dir).to_path_buf();
        let new_fan = !fan.is_dir();
        if let Err(e) = fs::create_dir_all(&fan) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("create directory", &fan)(e));
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename blob into", &dest)(e));
        }
        if self.sync {
            sync_dir(&fan)?;
            if new_fan {
                sync_dir(&self.dir)?;
            }
        }
        self.blobs_written.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(digest)
    }
}

/// sha256 of everything `src` yields, teeing it into `copy` when given; returns the digest and
/// the number of bytes.
fn hash_reader(mut src: impl Read, mut copy: Option<&mut File>) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(out) = copy.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    Ok((Digest(hasher.finalize().into()), len))
}

/// sha256 of a file, streaming.
pub fn hash_file(path: &Path) -> Result<Digest, StateError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    hash_reader(file, None).map(|(d, _)| d).map_err(io_err("read", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_are_sha256_in_lowercase_hex() {
        assert_eq!(Digest::of_bytes(b"").to_hex(), EMPTY_SHA256);
        let d: Digest = EMPTY_SHA256.parse().expect("canonical hex");
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(serde_json::to_string(&d).expect("json"), format!("\"{EMPTY_SHA256}\""));
        assert!(EMPTY_SHA256.to_uppercase().parse::<Digest>().is_err());
        assert!("abc".parse::<Digest>().is_err());
        assert!(serde_json::from_str::<Digest>("\"zz\"").is_err());
    }

    #[test]
    fn put_stores_once_and_get_returns_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(&dir.path().join("state")).expect("open");
        let src = dir.path().join("a.txt");
        fs::write(&src, "hello\n").expect("write");
        let d1 = blobs.put_file(&src).expect("put");
        let d2 = blobs.put_file(&src).expect("put again");
        assert_eq!(d1, d2);
        assert_eq!(d1, Digest::of_bytes(b"hello\n"));
        assert_eq!(blobs.stats().blobs_written, 1);
        assert_eq!(blobs.put_bytes(b"hello\n").expect("same bytes"), d1);
        assert_eq!(blobs.stats().blobs_written, 1);
        let path = blobs.get(&d1).expect("stored");
        assert!(path.starts_with(dir.path().join("state/blobs").join(&d1.to_hex()[..2])));
        assert_eq!(fs::read(&path).expect("read"), b"hello\n");
        blobs.verify(&d1).expect("intact");
        let missing = Digest::of_bytes(b"never stored");
        assert!(matches!(blobs.get(&missing), Err(StateError::MissingBlob { .. })));
        assert!(fs::read_dir(dir.path().join("state/tmp")).expect("tmp").next().is_none());
    }

    #[test]
    fn verify_detects_a_damaged_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        let d = blobs.put_bytes(b"original content").expect("put");
        fs::write(blobs.path_of(&d), b"tampered content").expect("tamper");
        let e = blobs.verify(&d).expect_err("damage detected").to_string();
        assert!(
            e.contains("is corrupt") && e.contains(&Digest::of_bytes(b"tampered content").to_hex()),
            "{e}"
        );
    }

    #[test]
    fn read_text_only_for_small_utf8_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        let text = blobs.put_bytes(b"line\n").expect("put");
        let binary = blobs.put_bytes(b"a\0b").expect("put");
        assert_eq!(blobs.read_text(&text, 100).expect("read").as_deref(), Some("line\n"));
        assert_eq!(blobs.read_text(&text, 3).expect("read"), None);
        assert_eq!(blobs.read_text(&binary, 100).expect("read"), None);
    }

    #[test]
    fn concurrent_writers_of_the_same_blob_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Arc::new(Blobs::open(&dir.path().join("state")).expect("open"));
        let src = dir.path().join("shared.bin");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &content).expect("write");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (blobs, src) = (blobs.clone(), src.clone());
                std::thread::spawn(move || blobs.put_file(&src).expect("put"))
            })
            .collect();
        let digests: HashSet<Digest> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        assert_eq!(digests.len(), 1);
        let d = digests.into_iter().next().expect("one digest");
        assert_eq!(d, Digest::of_bytes(&content));
        blobs.verify(&d).expect("intact");
        assert!(fs::read_dir(dir.path().join("state/tmp")).expect("tmp").next().is_none());
        let fan = blobs.path_of(&d).parent().expect("fan").to_path_buf();
        assert_eq!(fs::read_dir(fan).expect("fan").count(), 1);
    }

    #[test]
    fn a_big_file_is_hashed_and_stored_streaming() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(&dir.path().join("state")).expect("open").without_sync();
        let src = dir.path().join("big.bin");
        let mut expected = Sha256::new();
        {
            let mut f = File::create(&src).expect("create");
            let mut block = vec![0u8; 1 << 20];
            for i in 0..20u8 {
                block.iter_mut().enumerate().for_each(|(j, b)| *b = (j as u8) ^ i);
                expected.update(&block);
                f.write_all(&block).expect("write");
            }
        }
        let d = blobs.put_file(&src).expect("put");
        assert_eq!(d, Digest(expected.finalize().into()));
        assert_eq!(hash_file(&src).expect("hash"), d);
        let stats = blobs.stats();
        assert_eq!(stats.bytes_written, 20 << 20);
        assert_eq!(stats.bytes_hashed, 2 * (20 << 20), "hashed once, then once more while copying");
        assert_eq!(fs::metadata(blobs.path_of(&d)).expect("stored").len(), 20 << 20);
    }

    #[test]
    fn gc_keeps_live_blobs_and_removes_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        let keep = blobs.put_bytes(b"keep me").expect("put");
        let drop1 = blobs.put_bytes(b"drop me").expect("put");
        let drop2 = blobs.put_bytes(b"and me too").expect("put");
        let stale = dir.path().join("tmp/.blob.1.1.tmp");
        fs::write(&stale, b"half a blob").expect("write");
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
            .expect("age the temp file");
        let fresh = dir.path().join("tmp/.blob.1.2.tmp");
        fs::write(&fresh, b"being written").expect("write");
        let report = blobs.gc([keep]).expect("gc");
        assert_eq!(report.removed, 2);
        assert_eq!(report.kept, 1);
        assert_eq!(report.bytes_freed, (b"drop me".len() + b"and me too".len()) as u64);
        assert_eq!(report.stale_temps_removed, 1);
        assert!(blobs.contains(&keep));
        assert!(!blobs.contains(&drop1) && !blobs.contains(&drop2));
        assert!(!stale.exists() && fresh.exists());
    }
}
