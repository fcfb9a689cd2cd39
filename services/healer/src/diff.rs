//! Unified diffs of whole-file edits, the form fixes are handed back in (`git apply`/`patch -p1`).

/// Lines of context around a change.
const CONTEXT: usize = 3;

/// A unified diff turning `old` into `new` for `path` (`a/` and `b/` prefixes). An empty `old`
/// with `created` is a new file (`--- /dev/null`). Returns None when nothing changed.
///
/// One hunk spanning from the first to the last changed line: fixes edit one place, and a
/// single hunk keeps the patch easy to review.
pub fn unified(path: &str, old: &str, new: &str, created: bool) -> Option<String> {
    if old == new {
        return None;
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a.iter().rev().zip(b.iter().rev()).take(max_suffix).take_while(|(x, y)| x == y).count();
    let start = prefix.saturating_sub(CONTEXT);
    let a_end = (a.len() - suffix + CONTEXT).min(a.len());
    let b_end = (b.len() - suffix + CONTEXT).min(b.len());
    let mut out = String::new();
    if created {
        out.push_str("--- /dev/null\n");
    } else {
        out.push_str(&format!("--- a/{path}\n"));
    }
    out.push_str(&format!("+++ b/{path}\n"));
    let range = |from: usize, to: usize| {
        let len = to - from;
        let first = if len == 0 { from } else { from + 1 };
        format!("{first},{len}")
    };
    out.push_str(&format!("@@ -{} +{} @@\n", range(start, a_end), range(start, b_end)));
    let push = |out: &mut String, mark: char, line: &str| {
        out.push(mark);
        out.push_str(line.strip_suffix('\n').unwrap_or(line));
        out.push('\n');
        if !line.ends_with('\n') {
            out.push_str("\\ No newline at end of file\n");
        }
    };
    for line in &a[start..prefix] {
        push(&mut out, ' ', line);
    }
    for line in &a[prefix..a.len() - suffix] {
        push(&mut out, '-', line);
    }
    for line in &b[prefix..b.len() - suffix] {
        push(&mut out, '+', line);
    }
    for line in &a[a.len() - suffix..a_end] {
        push(&mut out, ' ', line);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_added_with_context() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "a\nb\nc\nX\nd\ne\n";
        let d = unified("f.txt", old, new, false).expect("diff");
        assert_eq!(d, "--- a/f.txt\n+++ b/f.txt\n@@ -1,5 +1,6 @@\n a\n b\n c\n+X\n d\n e\n");
    }

    #[test]
    fn replaced_line_and_new_file() {
        let d = unified("x.rs", "let a = 1\nlet b = 2;\n", "let a = 1;\nlet b = 2;\n", false).expect("diff");
        assert!(d.contains("-let a = 1\n+let a = 1;\n"), "{d}");
        let d = unified("requirements.txt", "", "PyYAML\n", true).expect("diff");
        assert_eq!(d, "--- /dev/null\n+++ b/requirements.txt\n@@ -0,0 +1,1 @@\n+PyYAML\n");
        assert!(unified("same", "x\n", "x\n", false).is_none());
    }

    #[test]
    fn missing_final_newline_is_marked() {
        let d = unified("r.txt", "flask", "flask\nPyYAML\n", false).expect("diff");
        assert!(d.contains("-flask\n\\ No newline at end of file\n+flask\n+PyYAML\n"), "{d}");
    }
}
