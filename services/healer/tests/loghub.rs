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
/// Mean parsing accuracy (exact templates) and FGA the miner must reach.
const PA_FLOOR: f64 = 0.85;
const FGA_FLOOR: f64 = 0.90;

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

/// A template as the metrics compare it: whitespace collapsed, runs of `<*>` (with what joins
/// them) one `<*>`, as Loghub-2.0's evaluation normalises both sides.
fn normal_template(t: &str) -> String {
    let words: Vec<&str> = t.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    for w in words {
        let w = if w.contains("<*>") && w.chars().all(|c| !c.is_alphanumeric() || "<*>".contains(c)) {
            "<*>".to_owned()
        } else {
            w.to_owned()
        };
        if w == "<*>" && out.last().is_some_and(|l| l == "<*>") {
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

/// Parsing accuracy (PA: share of messages whose template is the true one, text for text), and
/// the template-level F1 scores of Loghub-2.0: FGA (a predicted group is right when its messages
/// are exactly one true group's) and FTA (right group and right text).
fn template_metrics(truth: &[&str], predicted: &[(usize, String)]) -> (f64, f64, f64) {
    let pa =
        truth.iter().zip(predicted).filter(|(t, (_, p))| normal_template(t) == normal_template(p)).count()
            as f64
            / truth.len().max(1) as f64;
    let mut true_groups: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut predicted_groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, (t, (p, _))) in truth.iter().zip(predicted).enumerate() {
        true_groups.entry(t).or_default().push(i);
        predicted_groups.entry(*p).or_default().push(i);
    }
    let (mut group_right, mut template_right) = (0usize, 0usize);
    for members in predicted_groups.values() {
        let t = truth[members[0]];
        if true_groups[t] == *members {
            group_right += 1;
            if normal_template(t) == normal_template(&predicted[members[0]].1) {
                template_right += 1;
            }
        }
    }
    let f1 = |right: usize| {
        let (p, r) = (
            right as f64 / predicted_groups.len().max(1) as f64,
            right as f64 / true_groups.len().max(1) as f64,
        );
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    };
    (pa, f1(group_right), f1(template_right))
}

#[test]
fn template_metrics_compare_text_and_groups() {
    let truth = ["a <*> b", "a <*> b", "c"];
    let predicted = [(1, "a <*> b".to_owned()), (1, "a <*> <*> b".to_owned()), (2, "d".to_owned())];
    let (pa, fga, fta) = template_metrics(&truth, &predicted);
    assert!((pa - 2.0 / 3.0).abs() < 1e-9, "{pa}");
    assert!((fga - 1.0).abs() < 1e-9, "{fga}");
    assert!((fta - 0.5).abs() < 1e-9, "{fta}");
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
    let mut template_scores = Vec::new();
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>6} {:>9} {:>10}",
        "system", "GA", "PA", "FGA", "FTA", "templates", "truth"
    );
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
        let (pa, fga, fta) = template_metrics(&truth, &mined);
        println!("{system:<12} {ga:>6.3} {pa:>6.3} {fga:>6.3} {fta:>6.3} {found:>9} {expected:>10}");
        scores.push(ga);
        template_scores.push((pa, fga, fta));
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let n = template_scores.len() as f64;
    let (pa, fga, fta) = template_scores
        .iter()
        .fold((0.0, 0.0, 0.0), |(a, b, c), (x, y, z)| (a + x / n, b + y / n, c + z / n));
    println!("{:<12} {mean:>6.3} {pa:>6.3} {fga:>6.3} {fta:>6.3}", "mean");
    assert!(mean >= FLOOR, "mean grouping accuracy {mean:.4} is below {FLOOR}");
    // templates a person can read: issue 16's targets (measured 2026-12-06: PA 0.917, FGA 0.951)
    assert!(pa >= PA_FLOOR, "mean parsing accuracy {pa:.4} is below {PA_FLOOR}");
    assert!(fga >= FGA_FLOOR, "mean FGA {fga:.4} is below {FGA_FLOOR}");
}
