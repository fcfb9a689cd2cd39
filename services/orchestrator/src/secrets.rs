//! The secrets a pipeline names (`secrets = ["NAME"]`): where their values come from.
//!
//! A value is looked up when a command starts, in the orchestrator's own environment (as handed
//! over at start-up, see `helix_core::env`), then in `orchestrator.secrets_file` (`NAME=value`
//! lines, read anew each time so a rotated secret is used at once). Values are never written to
//! the run's records: only the names are part of the pipeline, and the command's output is masked
//! ([`crate::exec::Jail`]).

use std::collections::BTreeMap;
use std::path::Path;

/// `NAME=value` lines: `#` comments and blank lines skipped, `export ` allowed, one pair of
/// surrounding quotes removed.
fn parse_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let v = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| v.strip_prefix(*a).and_then(|r| r.strip_suffix(*b)))
            .unwrap_or(v);
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    out
}

/// The values of `names`, or which is missing (the error names it, never a value).
pub fn resolve(names: &[String], file: Option<&Path>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let from_file = match file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(text) => parse_file(&text),
            Err(e) => {
                return Err(format!("cannot read orchestrator.secrets_file {}: {}", f.display(), e.kind()));
            }
        },
        None => BTreeMap::new(),
    };
    for name in names {
        let value = helix_core::env::var(name).or_else(|| from_file.get(name).cloned());
        match value {
            Some(v) => {
                out.insert(name.clone(), v);
            }
            None => {
                return Err(format!(
                    "secret {name} is not set: give it to the orchestrator's environment or orchestrator.secrets_file"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_environment_then_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("secrets.env");
        std::fs::write(
            &file,
            "# comment\nexport HELIX_TEST_FILE_SECRET=\"from file\"\nOTHER='x=y'\n\nbroken line\n",
        )
        .expect("write");
        let got = resolve(&["HELIX_TEST_FILE_SECRET".into(), "OTHER".into(), "PATH".into()], Some(&file))
            .expect("all");
        assert_eq!(got["HELIX_TEST_FILE_SECRET"], "from file");
        assert_eq!(got["OTHER"], "x=y");
        assert!(got.contains_key("PATH"), "the environment first");
        let e = resolve(&["HELIX_TEST_NO_SUCH_SECRET".into()], Some(&file)).expect_err("missing");
        assert!(e.contains("HELIX_TEST_NO_SUCH_SECRET"), "{e}");
        let e = resolve(&["X".into()], Some(&dir.path().join("none"))).expect_err("no file");
        assert!(e.contains("secrets_file"), "{e}");
        assert!(resolve(&[], None).expect("none").is_empty());
    }
}
