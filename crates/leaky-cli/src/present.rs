//! Presentation shared by the commands: colours, findings on the terminal, progress bars,
//! output-path checks, `--fail-on`, and JSON writing. No training or diagnosis logic: that
//! is `leaky::experiment`'s.

use crate::report::html::number;
use crate::{show, Failure};
use anyhow::anyhow;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use leaky::doctor::{Finding, Severity};
use leaky::experiment::{self, Data, Episode, Events, Model};
use leaky::train::{EpochInfo, StepInfo};
use std::io::IsTerminal;
use std::path::Path;

impl From<leaky::experiment::Error> for Failure {
    fn from(e: leaky::experiment::Error) -> Self {
        match e {
            leaky::experiment::Error::BadInput(m) => Failure::BadInput(anyhow!(m)),
            leaky::experiment::Error::Run(m) => Failure::Run(anyhow!(m)),
        }
    }
}

/// Prefix an experiment error with the file it came from (`FILE: message`).
pub fn in_file(file: &Path) -> impl Fn(leaky::experiment::Error) -> Failure + '_ {
    move |e| match e {
        leaky::experiment::Error::BadInput(m) => Failure::BadInput(anyhow!("{}: {m}", show(file))),
        leaky::experiment::Error::Run(m) => Failure::Run(anyhow!("{}: {m}", show(file))),
    }
}

/// Colours for a terminal; plain text when piped.
#[derive(Clone, Copy)]
pub struct Style {
    /// Whether to emit ANSI colours.
    pub on: bool,
}

impl Style {
    /// Colours when stdout is a terminal.
    pub fn for_stdout() -> Self {
        Style { on: std::io::stdout().is_terminal() }
    }

    /// `text` in the ANSI style `code` (e.g. `"1;31"`), or plain.
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn severity(&self, s: Severity) -> String {
        let label = format!("{:<7}", s.as_str());
        match s {
            Severity::Error => self.paint("1;31", &label),
            Severity::Warning => self.paint("1;33", &label),
            Severity::Info => self.paint("36", &label),
        }
    }
}

/// Print the "Diagnosis" heading and every finding, consequences indented under their
/// cause; returns the counts line's start, `"E error(s), W warning(s), I info"`, for the
/// caller to finish with its run's outcome.
pub fn print_diagnosis(style: &Style, findings: &[Finding]) -> String {
    println!();
    println!("{}", style.paint("1", "Diagnosis"));
    if findings.is_empty() {
        println!("no findings: every probe is within its healthy range");
    }
    for (f, depth) in findings.iter().zip(leaky::doctor::causes::depths(findings)) {
        print_finding_at(style, f, depth);
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    format!(
        "{} error(s), {} warning(s), {} info",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    )
}

/// Print one finding, indented by `depth` levels (a consequence under its cause): headline
/// (with its id and, for a consequence, the id of its cause), evidence, why, ranked fixes
/// with their settings. Evidence numbers read as in the HTML report ([`number`]).
pub fn print_finding_at(style: &Style, f: &Finding, depth: usize) {
    let pad = "    ".repeat(depth);
    let step = f.step.map(|s| format!(" at step {s}")).unwrap_or_default();
    let id = if f.id.is_empty() { String::new() } else { format!("{} ", f.id) };
    let cause = f.caused_by.as_deref().map(|c| format!(" (follows from {c})")).unwrap_or_default();
    println!(
        "{pad}{id}{} {} in {}{step}{cause}",
        style.severity(f.severity),
        style.paint("1", f.code.as_str()),
        f.where_
    );
    let ev: Vec<String> = f
        .evidence
        .iter()
        .map(|(k, v)| match (v.as_f64(), v.as_array()) {
            (Some(x), _) => format!("{k}={}", number(x)),
            // Long lists (per-time-step norms, unit indices) are summarised; --json has them all.
            (None, Some(a)) if a.len() > 8 => {
                let item = |j: &serde_json::Value| j.as_f64().map(number).unwrap_or_else(|| j.to_string());
                format!(
                    "{k}=[{}, {}, {}, ..., {}] ({} values)",
                    item(&a[0]),
                    item(&a[1]),
                    item(&a[2]),
                    item(&a[a.len() - 1]),
                    a.len()
                )
            }
            _ => format!("{k}={v}"),
        })
        .collect();
    let width = crate::demo::terminal_width();
    print!("{}", wrapped(&format!("{pad}        evidence: "), &ev.join(", "), width));
    print!("{}", wrapped(&format!("{pad}        why: "), &f.why, width));
    for (i, fix) in f.fix.iter().enumerate() {
        let text =
            if fix.set.is_empty() { fix.text.clone() } else { format!("{} ({})", fix.text, fix.settings_line()) };
        print!("{}", wrapped(&format!("{pad}        fix {}: ", i + 1), &text, width));
    }
}

/// `head` then `text`, as one line when `width` is `None` (a pipe: one line per item, for
/// grep), else wrapped at spaces to `width` columns with the continuation lines indented
/// under the text (at least 40 columns for the text). Ends with a newline.
fn wrapped(head: &str, text: &str, width: Option<u16>) -> String {
    let Some(width) = width else { return format!("{head}{text}\n") };
    let indent = " ".repeat(head.chars().count());
    let width = (width as usize).max(indent.len() + 40);
    let options = textwrap::Options::new(width).initial_indent(head).subsequent_indent(&indent);
    let mut out = textwrap::fill(text, options);
    out.push('\n');
    out
}

#[cfg(test)]
mod wrap_tests {
    use super::wrapped;

    #[test]
    fn finding_lines_wrap_under_their_text_only_for_a_width() {
        let text = "sigmoid's local gradient z(1-z) is at most 0.25 and nearly 0 in its flat tails";
        assert_eq!(wrapped("    why: ", text, None), format!("    why: {text}\n"));
        let out = wrapped("    why: ", text, Some(50));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() >= 2, "{out}");
        assert!(lines.iter().all(|l| l.chars().count() <= 50), "{out}");
        assert!(lines[0].starts_with("    why: sigmoid's"));
        assert!(lines[1..].iter().all(|l| l.starts_with("         ") && !l[9..].starts_with(' ')), "{out}");
        // The words are all there, in order.
        let words: Vec<&str> = out.split_whitespace().skip(1).collect();
        assert_eq!(words.join(" "), text);
        // A very narrow terminal still leaves 40 columns for the text.
        assert!(wrapped("    why: ", text, Some(10)).lines().all(|l| l.chars().count() <= 49));
    }
}

/// Fail before training, not after, when an output file cannot be written there (a missing
/// or unwritable directory, a directory at the path).
pub fn check_output_path(flag: &str, path: &Path) -> anyhow::Result<()> {
    leaky::io::check_output_path(path, flag).map_err(|e| anyhow!(e))
}

/// Open `--log FILE` for a live JSON Lines log (after [`check_output_path`]): created or
/// truncated, or written through when it is a device or a pipe (`--log /dev/stderr`). A live
/// log cannot be written atomically: a run that is killed leaves the lines written so far.
pub fn open_log(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, Failure> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map(std::io::BufWriter::new)
        .map_err(|e| Failure::BadInput(anyhow!("--log {}: cannot open: {e}", show(path))))
}

/// Run `go` with the live printer, and with a JSON Lines log around it when `log` is given;
/// a log that could not be written is an error after the run (exit 1, the run's own output
/// is complete).
pub fn with_log<T>(
    log: Option<(&Path, std::io::BufWriter<std::fs::File>)>,
    live: &mut Live,
    go: impl FnOnce(&mut dyn Events) -> T,
) -> (T, Option<Failure>) {
    match log {
        None => (go(live), None),
        Some((path, file)) => {
            let mut logged = experiment::JsonLog::new(file, live);
            let out = go(&mut logged);
            let (_, _, err) = logged.into_parts();
            let fail = err.map(|e| {
                Failure::Run(anyhow!("--log {}: {e}; the run finished but its log is incomplete", show(path)))
            });
            (out, fail)
        }
    }
}

/// Write `text` to `path` atomically (exit 1 naming the file when it fails).
pub fn write_text(path: &Path, text: &str) -> Result<(), Failure> {
    leaky::train::write_atomic(path, text.as_bytes())
        .map_err(|e| Failure::Run(anyhow!("cannot write {}: {e}", show(path))))
}

/// Write `doc` as pretty JSON to `path` atomically.
pub fn write_json(path: &Path, doc: &serde_json::Value) -> Result<(), Failure> {
    write_text(path, &serde_json::to_string_pretty(doc).expect("serialisable"))
}

/// The lowest severity that makes `leaky doctor` exit 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 1 when any error is found (default).
    Error,
    /// Exit 1 on a warning or an error.
    Warning,
    /// Exit 1 on any finding.
    Info,
    /// Always exit 0 when the run completes.
    Never,
}

/// Exit 1 (`Failure::Findings`) when a finding reaches `fail_on`.
pub fn check_fail_on(fail_on: FailOn, findings: &[Finding]) -> Result<(), Failure> {
    let threshold = match fail_on {
        FailOn::Error => Some(Severity::Error),
        FailOn::Warning => Some(Severity::Warning),
        FailOn::Info => Some(Severity::Info),
        FailOn::Never => None,
    };
    if let Some(t) = threshold {
        if findings.iter().any(|f| f.severity.is_at_least(t)) {
            return Err(Failure::Findings(format!("a finding reached --fail-on {}", t.as_str())));
        }
    }
    Ok(())
}

/// How training shows on the terminal: a progress bar per epoch (`bars`), one line per
/// epoch, one line every twentieth of a DQN run, and each new finding as it appears.
pub struct Live {
    /// Print nothing at all.
    pub quiet: bool,
    /// Draw a progress bar during each epoch (`leaky train`).
    pub bars: bool,
    /// The finding style.
    pub style: Style,
    /// Epochs in the run.
    pub epochs: usize,
    /// Steps per epoch (for the bar's length).
    pub steps_per_epoch: u64,
    /// The epoch line shows train accuracy (`leaky train` on classifiers).
    pub train_acc: bool,
    bar: Option<ProgressBar>,
    loss_sum: f64,
    steps: usize,
    returns: Vec<f64>,
    zeroed: usize,
    samples: usize,
    start: std::time::Instant,
    found_any: bool,
}

impl Live {
    /// Terminal output for a run of `epochs` epochs of `steps_per_epoch` steps.
    pub fn new(quiet: bool, bars: bool, epochs: usize, steps_per_epoch: u64) -> Self {
        Live {
            quiet,
            bars,
            style: Style::for_stdout(),
            epochs,
            steps_per_epoch,
            train_acc: false,
            bar: None,
            loss_sum: 0.0,
            steps: 0,
            returns: Vec::new(),
            zeroed: 0,
            samples: 0,
            found_any: false,
            start: std::time::Instant::now(),
        }
    }

    /// Clear the progress bar (call once training is done).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.loss_sum = 0.0;
        self.steps = 0;
    }
}

impl Events for Live {
    fn on_step(&mut self, info: &StepInfo) {
        if self.quiet || !self.bars {
            return;
        }
        if self.bar.is_none() {
            let bar = ProgressBar::new(self.steps_per_epoch);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix:>7} [{bar:30}] {pos:>4}/{len:4} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{}", info.epoch + 1, self.epochs));
            self.bar = Some(bar);
        }
        self.loss_sum += info.loss;
        self.steps += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", self.loss_sum / self.steps as f64));
        }
    }

    fn on_epoch(&mut self, info: &EpochInfo, bptt_norms: &[f64]) {
        self.finish();
        if self.quiet {
            return;
        }
        let seconds = if self.bars { format!("  ({:.2}s)", info.seconds) } else { String::new() };
        if self.train_acc {
            println!(
                "epoch {:>3}/{}  loss {:.4}  train acc {:>6.2}%  val acc {:>6.2}%{seconds}",
                info.epoch + 1,
                self.epochs,
                info.train_loss,
                100.0 * info.train_acc,
                100.0 * info.val_acc,
            );
            return;
        }
        let acc =
            if info.val_acc.is_nan() { String::new() } else { format!("  val acc {:>6.2}%", 100.0 * info.val_acc) };
        let grad = match (bptt_norms.first(), bptt_norms.last()) {
            (Some(first), Some(last)) if *last > 0.0 && self.bars => {
                format!("  |dL/dh_0|/|dL/dh_T| {:.1e}", first / last)
            }
            _ => String::new(),
        };
        println!(
            "epoch {:>3}/{}  loss {:.4}  val loss {:.4}{acc}{grad}{seconds}",
            info.epoch + 1,
            self.epochs,
            info.train_loss,
            info.val_loss,
        );
    }

    fn on_episode(&mut self, e: &Episode) {
        self.returns.push(e.ret);
        self.zeroed += e.zeroed;
        self.samples += e.samples;
        let every = (e.episodes / 20).max(1);
        if self.quiet || ((e.index + 1) % every != 0 && e.index + 1 != e.episodes) {
            return;
        }
        let tail = &self.returns[self.returns.len().saturating_sub(every)..];
        let share = if self.samples > 0 { self.zeroed as f64 / self.samples as f64 } else { 0.0 };
        println!(
            "episode {:>4}/{}  return {:>3}  mean of last {} {:>6.1}  zero-gradient samples {:>5.1}%  env steps {:>6}  ({:.1}s)",
            e.index + 1,
            e.episodes,
            e.ret,
            tail.len(),
            tail.iter().sum::<f64>() / tail.len() as f64,
            100.0 * share,
            e.env_steps,
            self.start.elapsed().as_secs_f64()
        );
        (self.zeroed, self.samples) = (0, 0);
    }

    /// One line per new finding while training; the final diagnosis prints each in full once.
    fn on_finding(&mut self, f: &Finding) {
        if !self.quiet {
            if !self.found_any {
                // Live findings are judged on the run so far; the diagnosis judges the whole
                // run, and may keep fewer (a loss that recovers, a rule that needs the end).
                println!("  (findings as they appear; the diagnosis at the end judges the whole run)");
                self.found_any = true;
            }
            let step = f.step.map(|s| format!(" at step {s}")).unwrap_or_default();
            println!(
                "  found: {} {} in {}{step}",
                self.style.severity(f.severity).trim_end(),
                f.code.as_str(),
                f.where_
            );
        }
    }
}

/// The run header: the data line, the model listing (the layer numbering every finding
/// uses), extra lines, then the training settings.
pub fn print_header(file: &Path, exp: &experiment::Experiment, data: &Data, model: &Model) {
    let cfg = experiment::train_config(exp);
    if let Model::Dqn(d) = model {
        println!(
            "{}: dqn on {}: {}, td_loss {}, gamma {}, reward_scale {}, target_update {}, {} lr {}, batch {}, {} episodes",
            show(file),
            exp.rl.env,
            model.listing(),
            d.td_loss.name(),
            d.gamma,
            d.reward_scale,
            d.target_update,
            d.update.rule.name(),
            d.update.lr,
            d.batch_size,
            d.episodes
        );
        return;
    }
    println!("{}: {} ({})", show(file), exp.data.dataset, data.describe());
    match model {
        Model::Feed { .. } => println!("model ({} parameters):\n{}", model.num_params(), model.listing()),
        Model::Seq(m) => {
            println!("model ({} parameters): {}", model.num_params(), model.listing());
            let (radius, sigma) = m.whh_spectrum();
            println!("Whh at init: spectral radius {radius:.3}, largest singular value {sigma:.3}");
        }
        Model::Dqn(_) => {}
    }
    let clip =
        if matches!(model, Model::Seq(_)) { format!(", clip_grad_norm {}", cfg.clip_grad_norm) } else { String::new() };
    println!(
        "training: {} epochs, batch {}, {} lr {}, loss {}{clip}",
        cfg.epochs,
        cfg.batch_size,
        cfg.update.rule.name(),
        cfg.update.lr,
        cfg.loss.name()
    );
}

/// `x` in scientific notation with a two-digit signed exponent (`4.14e-12`, `2.66e-09`,
/// `0.00e+00`), so that a right-aligned column of them lines up digit for digit.
pub fn sci(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let text = format!("{x:.2e}");
    let (mantissa, exp) = text.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e}'s exponent is an integer");
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

#[cfg(test)]
mod sci_tests {
    #[test]
    fn sci_pads_the_exponent() {
        assert_eq!(super::sci(4.14e-12), "4.14e-12");
        assert_eq!(super::sci(2.66e-9), "2.66e-09");
        assert_eq!(super::sci(0.0), "0.00e+00");
        assert_eq!(super::sci(1234.0), "1.23e+03");
        assert_eq!(super::sci(f64::NAN), "NaN");
    }
}
