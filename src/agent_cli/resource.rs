//! Turning what a tool is about to touch into a canonical resource.
//!
//! The service matches policy against one spelling of a resource and
//! refuses any other (no leading or trailing `/` or spaces, no empty, `.`
//! or `..` segments, no control, zero-width or bidi characters, NFC), so a
//! hook that sent a tool's raw input would be refused (and deny) half the
//! time. Every mapping here yields printable ASCII that is canonical by
//! construction:
//!
//! - `%` and every character that is not printable ASCII become `%XX`
//!   (UTF-8 bytes), which is also what makes the result NFC;
//! - a Bash command has its whitespace collapsed to single spaces and its
//!   `/` written `%2F`: it is one segment, so a policy glob like `rm *` or
//!   `kubectl *` (where `*` stops at `/`) matches every command that
//!   starts that way, whatever paths its arguments hold;
//! - a path is made absolute against the hook's `cwd`, `.` and `..` are
//!   resolved by name (no file system access), and the leading `/` goes:
//!   `/home/a/x.rs` → `home/a/x.rs`, so `home/*/project/**` globs work;
//! - a URL becomes its host and path: `https://docs.rs/a/b?q` → `docs.rs/a/b`.
//!
//! Anything longer than the service's 512 characters is cut at 500 and
//! ends in `...`; the whole input is still in `details`, which the payload
//! hash binds and approvers see.

use serde_json::{Map, Value};

const MAX: usize = 512;

/// Percent-encodes `%`, everything outside printable ASCII and, for a
/// single-segment value, `/`.
fn escape(s: &str, slash: bool, out: &mut String) {
    for c in s.chars() {
        let keep = (c == ' ' || c.is_ascii_graphic()) && c != '%' && !(slash && c == '/');
        if keep {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
}

/// A whole segment must not be `.` or `..`, nor start or end with a space.
fn fix_segment(seg: &mut String) {
    if seg == "." || seg == ".." {
        *seg = seg.replace('.', "%2E");
    }
    if seg.ends_with(' ') {
        seg.pop();
        seg.push_str("%20");
    }
    if seg.starts_with(' ') {
        seg.replace_range(0..1, "%20");
    }
}

fn cut(mut s: String) -> String {
    if s.len() <= MAX {
        return s;
    }
    let mut end = 500;
    // Never split a %XX escape (everything here is ASCII, so bytes are chars).
    if let Some(p) = s[..end].rfind('%')
        && end - p < 3
    {
        end = p;
    }
    s.truncate(end);
    while s.ends_with('/') || s.ends_with(' ') {
        s.pop();
    }
    s.push_str("...");
    s
}

/// A shell command as one segment: `rm  -rf /tmp/x` → `rm -rf %2Ftmp%2Fx`.
pub fn command(cmd: &str) -> Option<String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut out = String::new();
    escape(&words.join(" "), true, &mut out);
    fix_segment(&mut out);
    Some(cut(out))
}

/// A file path, absolute against `cwd`, without its leading `/`.
pub fn path(p: &str, cwd: &str) -> Option<String> {
    if p.trim().is_empty() {
        return None;
    }
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{cwd}/{p}")
    };
    let mut segments: Vec<&str> = vec![];
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        // The root itself.
        return Some("%2F".into());
    }
    let mut out = String::new();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        let mut e = String::new();
        escape(seg, true, &mut e);
        fix_segment(&mut e);
        out.push_str(&e);
    }
    Some(cut(out))
}

/// A URL as host and path: `https://docs.rs/a/b?q=1` → `docs.rs/a/b`.
pub fn url(u: &str) -> Option<String> {
    let parsed = url::Url::parse(u.trim()).ok()?;
    let Some(host) = parsed.host_str() else {
        return command(u);
    };
    let mut out = String::new();
    escape(host, true, &mut out);
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    for seg in parsed.path_segments().into_iter().flatten() {
        if seg.is_empty() {
            continue;
        }
        out.push('/');
        let mut e = String::new();
        // Already percent-encoded by the URL parser; only keep it canonical.
        for c in seg.chars() {
            if c.is_ascii_graphic() && c != '/' {
                e.push(c);
            } else {
                escape(&c.to_string(), true, &mut e);
            }
        }
        fix_segment(&mut e);
        out.push_str(&e);
    }
    Some(cut(out))
}

/// The resource for a Claude Code tool call: the command for `Bash`, the
/// file for the file tools, the URL for `WebFetch`, else the `cwd`.
/// `Err` names the field a known tool's input lacks.
pub fn for_tool(tool: &str, input: &Map<String, Value>, cwd: &str) -> Result<String, String> {
    let field = |name: &str| -> Result<&str, String> {
        input
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the {tool} tool input has no \"{name}\" string"))
    };
    let mapped = match tool {
        "Bash" => command(field("command")?),
        "Edit" | "Write" | "Read" | "MultiEdit" => path(field("file_path")?, cwd),
        "NotebookEdit" => path(field("notebook_path")?, cwd),
        "WebFetch" => url(field("url")?),
        _ => path(cwd, "/"),
    };
    mapped.ok_or_else(|| format!("the {tool} tool input names nothing to act on"))
}

/// Text shown to approvers, made safe for any check the service applies:
/// printable ASCII, whitespace collapsed, anything else as `\u{…}`.
pub fn display(s: &str, max: usize) -> String {
    let mut out = String::new();
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_ascii_graphic() {
                out.push(c);
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        }
        if out.len() > max {
            break;
        }
    }
    if out.len() > max {
        out.truncate(max.saturating_sub(3));
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical-resource rules as the product states them.
    fn canonical(r: &str) -> bool {
        !r.is_empty()
            && r.len() <= MAX
            && !r.starts_with(['/', ' '])
            && !r.ends_with(['/', ' '])
            && r.split('/').all(|s| {
                !s.is_empty() && s != "." && s != ".." && !s.starts_with(' ') && !s.ends_with(' ')
            })
            && r.chars().all(|c| c == ' ' || c.is_ascii_graphic())
    }

    #[test]
    fn a_bash_command_is_one_segment_so_prefix_globs_match_it() {
        assert_eq!(command("  rm   -rf /tmp/x\n").unwrap(), "rm -rf %2Ftmp%2Fx");
        assert_eq!(command("kubectl get pods").unwrap(), "kubectl get pods");
        assert_eq!(command("..").unwrap(), "%2E%2E");
        assert!(command(" \n ").is_none());
    }

    #[test]
    fn paths_are_absolute_resolved_and_without_the_leading_slash() {
        assert_eq!(
            path("src/../lib.rs", "/home/a/p").unwrap(),
            "home/a/p/lib.rs"
        );
        assert_eq!(path("/etc//passwd", "/x").unwrap(), "etc/passwd");
        assert_eq!(path("/", "/x").unwrap(), "%2F");
        assert_eq!(path("/a/ b /c", "/").unwrap(), "a/%20b%20/c");
    }

    #[test]
    fn urls_become_host_and_path() {
        assert_eq!(url("https://docs.rs/a//b/?q=1").unwrap(), "docs.rs/a/b");
        assert_eq!(url("http://127.0.0.1:9/x").unwrap(), "127.0.0.1:9/x");
    }

    #[test]
    fn every_mapping_is_canonical_whatever_it_is_given() {
        let nasty = [
            "rm -rf /",
            "cd .. && ls ./",
            "echo \u{202e}evil\u{200b} caf\u{65}\u{301}",
            "printf '%s' \t\r\u{7}",
            "/./../",
            "a/../../..",
            &"x/".repeat(400),
            &"é".repeat(300),
            " / ",
            "%2F",
        ];
        for n in nasty {
            for r in [command(n), path(n, "/home/u"), url(n), path("f", n)]
                .into_iter()
                .flatten()
            {
                assert!(canonical(&r), "{n:?} → {r:?}");
            }
        }
    }

    #[test]
    fn text_for_approvers_is_printable_and_short() {
        assert_eq!(display("rm\n-rf\u{202e} x", 100), "rm -rf\\u{202e} x");
        assert!(display(&"a ".repeat(500), 50).len() <= 50);
    }
}
