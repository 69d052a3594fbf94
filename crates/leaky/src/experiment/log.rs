//! A live run log: one JSON object per line (JSON Lines) for every training step, epoch,
//! DQN episode and new finding, written while the run goes, so it can be followed with
//! `tail -f` or read by plotting tools while training.
//!
//! Every line has `"event"` (`"step"`, `"epoch"`, `"episode"` or `"finding"`); steps and
//! epochs count from 1, as the terminal does. Numbers that are not finite are written as
//! `null` (JSON has no NaN). `docs/experiment.md` lists the fields of each event.
//!
//! ```
//! use leaky::experiment::{parse, run, JsonLog, NoEvents, RunOptions};
//!
//! let mut exp = parse("[train]\nepochs = 1\n")?;
//! let mut log = JsonLog::new(Vec::new(), NoEvents);
//! run(&exp, ".".as_ref(), RunOptions::train(), &mut log)?;
//! let (bytes, _inner, error) = log.into_parts();
//! assert!(error.is_none());
//! let text = String::from_utf8(bytes).unwrap();
//! assert!(text.lines().last().unwrap().contains("\"event\":\"epoch\""));
//! # Ok::<(), leaky::experiment::Error>(())
//! ```

use super::run::{Episode, Events};
use crate::doctor::Finding;
use crate::train::{EpochInfo, StepInfo};
use serde_json::{json, Value};
use std::io::{self, Write};

/// Writes every event as a JSON line to `out` and passes it on to `inner` (the terminal
/// printer, or [`NoEvents`](super::NoEvents)). Lines are flushed after every epoch, episode
/// and finding; steps are flushed with them. The first write error stops the log (training
/// goes on) and is kept for [`JsonLog::into_parts`].
pub struct JsonLog<W: Write, E: Events> {
    out: W,
    inner: E,
    error: Option<io::Error>,
}

impl<W: Write, E: Events> JsonLog<W, E> {
    /// A log writing to `out`, forwarding every event to `inner`.
    pub fn new(out: W, inner: E) -> Self {
        JsonLog { out, inner, error: None }
    }

    /// The inner event handler (e.g. to finish a progress bar).
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }

    /// The writer, the inner handler, and the first write error, if any.
    pub fn into_parts(mut self) -> (W, E, Option<io::Error>) {
        self.flush();
        (self.out, self.inner, self.error)
    }

    fn line(&mut self, v: Value) {
        if self.error.is_some() {
            return;
        }
        let mut text = v.to_string();
        text.push('\n');
        if let Err(e) = self.out.write_all(text.as_bytes()) {
            self.error = Some(e);
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }
}

impl<W: Write, E: Events> Events for JsonLog<W, E> {
    fn on_step(&mut self, i: &StepInfo) {
        self.line(json!({"event": "step", "epoch": i.epoch + 1, "step": i.step + 1, "loss": i.loss,
                         "lr": i.lr, "grad_norm": i.grad_norm, "batch_size": i.batch_size}));
        self.inner.on_step(i);
    }

    fn on_epoch(&mut self, i: &EpochInfo, bptt_norms: &[f64]) {
        let mut v = json!({"event": "epoch", "epoch": i.epoch + 1, "train_loss": i.train_loss,
                           "train_acc": i.train_acc, "val_loss": i.val_loss, "val_acc": i.val_acc,
                           "lr": i.lr, "seconds": i.seconds});
        if let (Some(first), Some(last)) = (bptt_norms.first(), bptt_norms.last()) {
            v["bptt_ratio"] = json!(first / last);
        }
        self.line(v);
        self.flush();
        self.inner.on_epoch(i, bptt_norms);
    }

    fn on_episode(&mut self, e: &Episode) {
        self.line(json!({"event": "episode", "episode": e.index + 1, "episodes": e.episodes, "return": e.ret,
                         "env_steps": e.env_steps, "zeroed": e.zeroed, "samples": e.samples}));
        self.flush();
        self.inner.on_episode(e);
    }

    fn on_finding(&mut self, f: &Finding) {
        self.line(json!({"event": "finding", "finding": f}));
        self.flush();
        self.inner.on_finding(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{parse, run, NoEvents, RunOptions};

    /// A writer that fails after `ok` bytes.
    struct Full {
        ok: usize,
    }
    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if b.len() > self.ok {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
            }
            self.ok -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_line_per_event_numbered_from_one() {
        let exp = parse("[train]\nepochs = 2\nbatch_size = 512\n").unwrap();
        let mut log = JsonLog::new(Vec::new(), NoEvents);
        let result = run(&exp, ".".as_ref(), RunOptions::doctor(), &mut log).unwrap();
        let (bytes, _, err) = log.into_parts();
        assert!(err.is_none());
        let lines: Vec<Value> =
            String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let of = |e: &str| lines.iter().filter(|v| v["event"] == e).collect::<Vec<_>>();
        let report = result.report.unwrap();
        assert_eq!(of("step").len(), report.steps);
        assert_eq!(of("step")[0]["step"], 1);
        assert_eq!(of("step")[0]["epoch"], 1);
        let epochs = of("epoch");
        assert_eq!(epochs.len(), 2);
        assert_eq!(epochs[1]["epoch"], 2);
        // The epoch lines carry the history the report keeps.
        for (line, h) in epochs.iter().zip(&report.history) {
            assert_eq!(line["val_acc"].as_f64().unwrap(), h.val_acc);
            assert_eq!(line["train_loss"].as_f64().unwrap(), h.train_loss);
        }
        // Each finding that training saw appears once, with the JSON contract's fields.
        for f in of("finding") {
            assert!(f["finding"]["code"].is_string() && f["finding"]["evidence"].is_object(), "{f}");
        }
    }

    #[test]
    fn a_write_error_stops_the_log_not_the_run() {
        let exp = parse("[train]\nepochs = 1\nbatch_size = 512\n").unwrap();
        let mut log = JsonLog::new(Full { ok: 300 }, NoEvents);
        let result = run(&exp, ".".as_ref(), RunOptions::train(), &mut log);
        assert!(result.is_ok());
        let (_, _, err) = log.into_parts();
        assert_eq!(err.unwrap().kind(), io::ErrorKind::StorageFull);
    }
}
