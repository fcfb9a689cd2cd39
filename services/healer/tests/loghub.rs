//! Grouping accuracy of the template miner on the Loghub-2k samples (tests/fixtures/loghub).
//! Prints the figure per system and the mean; fails below the floor.
//!
//! Grouping accuracy (GA): a message counts as correct when the set of messages that got its
//! template id is exactly the set that shares its ground-truth template; GA is the share of
//! correct messages. The miner runs with its one default configuration on every system, and no
//! rule in it may name a string of these files: it is also judged on Loghub systems not here.

use std::collections::HashMap;

use helix_healer::mining::mine;

/// Mean GA the miner must reach over the systems in the fixture folder.
const FLOOR: f64 = 0.95;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/loghub");

/// Records of a CSV text: fields split on commas, `"`-quoted fields may hold commas, newlines
/// and `""` (one quote).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// `(Content, EventTemplate)` of every row of a structured Loghub file.
fn load(path: &std::path::Path) -> Vec<(String, String)> {
    let bytes = std::fs::read(path).expect("readable fixture");
    let mut records = csv_records(&String::from_utf8_lossy(&bytes)).into_iter();
    let header = records.next().expect("header row");
    let column = |name: &str| header.iter().position(|h| h == name).expect("column in header");
    let (content, template) = (column("Content"), column("EventTemplate"));
    records
        .filter(|r| r.len() > 1)
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{}: {r:?}", path.display());
            (r[content].clone(), r[template].clone())
        })
        .collect()
}

/// Share of positions whose predicted group equals their true group, as sets of positions.
fn grouping_accuracy<T: std::hash::Hash + Eq, P: std::hash::Hash + Eq>(truth: &[T], predicted: &[P]) -> f64 {
    assert_eq!(truth.len(), predicted.len());
    let mut true_groups: HashMap<&T, Vec<usize>> = HashMap::new();
    let mut predicted_groups: HashMap<&P, Vec<usize>> = HashMap::new();
    for (i, (t, p)) in truth.iter().zip(predicted).enumerate() {
        true_groups.entry(t).or_default().push(i);
        predicted_groups.entry(p).or_default().push(i);
    }
    // both lists are in ascending order, so equal sets are equal vectors
    let correct = truth.iter().zip(predicted).filter(|(t, p)| true_groups[t] == predicted_groups[p]).count();
    correct as f64 / truth.len().max(1) as f64
}

#[test]
fn csv_splitter_handles_quotes() {
    let records = csv_records("a,b,c\n1,\"x, \"\"y\"\"\",\"multi\nline\"\r\n2,,\n");
    assert_eq!(records.len(), 3);
    assert_eq!(records[1], ["1", "x, \"y\"", "multi\nline"]);
    assert_eq!(records[2], ["2", "", ""]);
}

#[test]
fn grouping_accuracy_counts_exact_groups() {
    assert_eq!(grouping_accuracy(&["a", "a", "b"], &[1, 1, 2]), 1.0);
    // the two `a` messages are split: only `b` is right
    assert!((grouping_accuracy(&["a", "a", "b"], &[1, 2, 3]) - 1.0 / 3.0).abs() < 1e-9);
    // `b` is merged into the `a` group: nothing is right
    assert_eq!(grouping_accuracy(&["a", "a", "b"], &[1, 1, 1]), 0.0);
}

#[test]
fn loghub_grouping_accuracy_meets_the_floor() {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .expect("fixture folder")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_2k.log_structured.csv"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "expected the Loghub-2k samples in {DIR}, found {}", files.len());

    let mut scores = Vec::new();
    println!("{:<12} {:>6} {:>9} {:>10}", "system", "GA", "templates", "truth");
    for path in &files {
        let system = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('_').next())
            .expect("file name")
            .to_owned();
        let rows = load(path);
        assert_eq!(rows.len(), 2000, "{system}");
        let mined = mine(rows.iter().map(|(content, _)| content.as_str()));
        let predicted: Vec<usize> = mined.iter().map(|(id, _)| *id).collect();
        let truth: Vec<&str> = rows.iter().map(|(_, template)| template.as_str()).collect();
        let ga = grouping_accuracy(&truth, &predicted);
        let found = predicted.iter().collect::<std::collections::HashSet<_>>().len();
        let expected = truth.iter().collect::<std::collections::HashSet<_>>().len();
        println!("{system:<12} {ga:>6.3} {found:>9} {expected:>10}");
        scores.push(ga);
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    println!("{:<12} {mean:>6.3}", "mean");
    assert!(mean >= FLOOR, "mean grouping accuracy {mean:.4} is below {FLOOR}");
}
