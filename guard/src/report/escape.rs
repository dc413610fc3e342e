//! Escaping for everything taken from audit records (container names, command lines, paths,
//! errors): these are attacker-influenced strings.

use std::fmt::Write;

/// For HTML text and double- or single-quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are invalid in HTML text; show them instead.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// For terminal output: control characters (ANSI escapes, carriage returns, newlines) are shown
/// as `\u{..}` so a crafted name cannot rewrite the operator's terminal or fake report lines.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// For Markdown table cells and text: Markdown passes raw HTML through, so HTML is escaped too,
/// and the characters that would start formatting or end a cell are backslash-escaped.
pub fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in escape_text(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape_html("a\u{1b}[31m"), "a\\u{1b}[31m");
        assert_eq!(escape_html("ünïcode"), "ünïcode");
    }

    #[test]
    fn text_and_md() {
        assert_eq!(escape_text("a\nb\u{1b}[2J"), "a\\u{a}b\\u{1b}[2J");
        assert_eq!(escape_md("a|b <img> *x*"), "a\\|b &lt;img&gt; \\*x\\*");
        assert!(!escape_md("x\n| fake | row |").contains('\n'));
    }
}
