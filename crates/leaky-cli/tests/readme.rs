//! The README's "real output" blocks are real and current.
//!
//! A block is generated when the line before its opening fence is a marker:
//!
//! ```text
//! <!-- output: leaky doctor examples/sick/tanh-saturated.toml | from:Diagnosis -->
//! ```
//!
//! The block then holds `$ leaky ...` followed by what that command prints (stdout and
//! stderr, in order), cut by the filters after `|`: `from:TEXT` (from the first line that
//! contains TEXT), `until:TEXT` (up to and including the first line that contains TEXT),
//! `head:N`, `tail:N`. This test runs every marked command from the repository root and
//! compares; wall-clock durations ("0.6 s", "in 2.74s") are masked on both sides, since they
//! differ from run to run. Markers written `output slow:` (the full DQN demo, a minute) are
//! compared only with `LEAKY_README_SLOW=1`.
//!
//! `LEAKY_UPDATE_README=1 cargo test --release -p leaky-cli --test readme` rewrites every
//! marked block (slow ones included) from a fresh run: that is how the README's outputs are
//! made, never by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// One marked block: where its content lines are in the README, and how to make them.
struct Block {
    /// Index of the line after the opening fence.
    start: usize,
    /// Index of the closing fence.
    end: usize,
    command: String,
    filters: Vec<String>,
    slow: bool,
}

fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let (slow, rest) = if let Some(r) = t.strip_prefix("<!-- output slow:") {
            (true, r)
        } else if let Some(r) = t.strip_prefix("<!-- output:") {
            (false, r)
        } else {
            continue;
        };
        let rest = rest.strip_suffix("-->").unwrap_or_else(|| panic!("README line {}: marker without -->", i + 1));
        let mut parts = rest.split('|').map(str::trim);
        let command = parts.next().unwrap().to_string();
        let filters = parts.map(str::to_string).collect();
        assert!(
            lines.get(i + 1).is_some_and(|l| l.starts_with("```")),
            "README line {}: a marker must be followed by a fence",
            i + 1
        );
        let end = (i + 2..lines.len())
            .find(|&k| lines[k].starts_with("```"))
            .unwrap_or_else(|| panic!("README line {}: unclosed block", i + 2));
        out.push(Block { start: i + 2, end, command, filters, slow });
    }
    out
}

/// Run `command` ("leaky ARGS", arguments split on spaces) from the repository root; stdout
/// and stderr go to one file, so they interleave as on a terminal.
fn run(command: &str) -> String {
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("leaky"), "a README command must start with leaky: {command}");
    let dir = std::env::temp_dir().join(format!("leaky-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("out-{}.txt", command.len()));
    let file = std::fs::File::create(&path).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_leaky"))
        .args(words)
        .current_dir(repo_root())
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .status()
        .unwrap();
    // Exit 1 is a diagnosis that reached --fail-on: part of what the README shows.
    assert!(matches!(status.code(), Some(0 | 1)), "{command}: {status}");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    text
}

fn filter(text: &str, filters: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    for f in filters {
        let (kind, arg) = f.split_once(':').unwrap_or_else(|| panic!("filter {f}: want kind:arg"));
        match kind {
            "from" => {
                let k = lines.iter().position(|l| l.contains(arg)).unwrap_or_else(|| panic!("from:{arg} not found"));
                lines.drain(..k);
            }
            "until" => {
                let k = lines.iter().position(|l| l.contains(arg)).unwrap_or_else(|| panic!("until:{arg} not found"));
                lines.truncate(k + 1);
            }
            "head" => lines.truncate(arg.parse().unwrap()),
            "tail" => {
                let n: usize = arg.parse().unwrap();
                let k = lines.len().saturating_sub(n);
                lines.drain(..k);
            }
            _ => panic!("unknown filter {f}"),
        }
    }
    lines
}

/// Replace every duration (a number followed by "s" or " s" and then a non-letter) by `#s`.
fn mask(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric());
        if starts_number {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let mut k = j;
            if k < chars.len() && chars[k] == ' ' {
                k += 1;
            }
            let is_unit = k < chars.len()
                && chars[k] == 's'
                && chars.get(k + 1).is_none_or(|c| !c.is_ascii_alphanumeric())
                && chars[j - 1] != '.';
            if is_unit {
                out.push_str("#s");
                i = k + 1;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[test]
fn masking_hides_durations_only() {
    assert_eq!(mask("  (0.6 s)"), "  (#s)");
    assert_eq!(mask("230 steps in 0.03s"), "230 steps in #s");
    assert_eq!(mask("best val acc 92.20%, 1438 training examples"), "best val acc 92.20%, 1438 training examples");
    assert_eq!(mask("x2 steps of 3 samples"), "x2 steps of 3 samples");
}

#[test]
fn readme_outputs_are_current() {
    let path = repo_root().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let update = std::env::var_os("LEAKY_UPDATE_README").is_some();
    let slow_too = update || std::env::var_os("LEAKY_README_SLOW").is_some();
    let found = blocks(&lines);
    assert!(found.len() >= 5, "the README has {} generated blocks", found.len());
    let mut new_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut stale = Vec::new();
    // Back to front, so replacing a block does not move the ones before it.
    for b in found.iter().rev() {
        if b.slow && !slow_too {
            continue;
        }
        let mut want = vec![format!("$ {}", b.command)];
        want.extend(filter(&run(&b.command), &b.filters));
        let have: Vec<String> = lines[b.start..b.end].iter().map(|l| l.to_string()).collect();
        let same = have.len() == want.len() && have.iter().zip(&want).all(|(h, w)| mask(h) == mask(w));
        if !same {
            stale.push(format!("README line {}: {}", b.start, b.command));
            new_lines.splice(b.start..b.end, want);
        }
    }
    if update {
        let mut out = new_lines.join("\n");
        out.push('\n');
        std::fs::write(&path, out).unwrap();
    } else {
        assert!(
            stale.is_empty(),
            "stale README outputs (regenerate with LEAKY_UPDATE_README=1 cargo test --release -p leaky-cli --test readme):\n{}",
            stale.join("\n")
        );
    }
}
