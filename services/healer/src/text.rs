//! Preparing raw tool output for the parsers.

use std::borrow::Cow;

/// Removes ANSI escape sequences (colours, cursor moves) and carriage returns, so coloured
/// compiler output parses like plain output. Borrows when there is nothing to remove.
pub fn clean(input: &str) -> Cow<'_, str> {
    if !input.as_bytes().iter().any(|&b| b == 0x1b || b == b'\r') {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.peek() {
                // CSI: ESC [ params intermediates final
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: ESC ] ... BEL or ESC \
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {
                    chars.next();
                }
            },
            '\r' => {
                // CRLF → LF; a lone CR (progress bars) ends the line as well
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours_and_carriage_returns() {
        let s = "\x1b[1m\x1b[31merror[E0425]\x1b[0m\x1b[1m: cannot find value\x1b[0m\r\nnext\rline";
        assert_eq!(clean(s), "error[E0425]: cannot find value\nnext\nline");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }
}
