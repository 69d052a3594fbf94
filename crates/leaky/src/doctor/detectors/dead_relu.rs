//! `dead_relu`: ReLU units that output 0 for **every** example of a full pass over the
//! training set ([`DeadUnitPass`]; one batch is not enough, a unit may simply be off for
//! it). The latest pass of each layer is judged: a dead unit gets no gradient on any
//! example, so it stays dead, and the latest pass is the state the model ends in.

use super::{group_by, layer_where};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{DeadUnitPass, RunInfo};

/// A layer with at least this share of dead units is a warning: half of the "large
/// fraction (e.g. 40%)" of Karpathy's "Yes you should understand backprop" (2016), where
/// forwarding the whole training set through a trained net finds units zero the entire time.
pub const DEAD_RELU_WARN_FRACTION: f64 = 0.2;

/// A layer with at least this share of dead units is an error: the 40% of the same post.
pub const DEAD_RELU_ERROR_FRACTION: f64 = 0.4;

/// Findings, one per ReLU layer with any dead unit: `info` below
/// [`DEAD_RELU_WARN_FRACTION`] (a few dead units are common and cheap), `warning` or
/// `error` above.
///
/// `large_updates` says whether some weight's update ratio was too large (an
/// `update_ratio` finding, direction `too_large`): then overshooting updates are the likely
/// killer and lowering the learning rate comes first; otherwise the units were dead from
/// the start or pushed there by the initialisation, and the bias and init fixes come first.
pub fn detect(passes: &[DeadUnitPass], run: &RunInfo, large_updates: bool) -> Vec<Finding> {
    let relevant = passes.iter().filter(|p| p.kind == "relu" && p.examples > 0 && !p.fire_counts.is_empty());
    let mut out = Vec::new();
    for (layer, ps) in group_by(relevant, |p| p.layer, |p| p.step) {
        let p = *ps.last().expect("groups are not empty");
        let dead = p.dead_units();
        if dead.is_empty() {
            continue;
        }
        let frac = p.dead_fraction();
        let severity = if frac >= DEAD_RELU_ERROR_FRACTION {
            Severity::Error
        } else if frac >= DEAD_RELU_WARN_FRACTION {
            Severity::Warning
        } else {
            Severity::Info
        };
        let what = if p.per_channel { "channels" } else { "units" };
        let why = format!(
            "{} of {} {what} ({:.0}%) output 0 for all {} training examples; ReLU's local gradient 1[x > 0] is then 0 \
             on every example, so their incoming weights never change again and they stay dead.",
            dead.len(),
            p.fire_counts.len(),
            100.0 * frac,
            p.examples
        );
        out.push(
            Finding::new(Code::DeadRelu, severity, layer_where(layer, &p.kind), Some(p.step), why)
                .at_layer(layer)
                .with("dead_fraction", frac)
                .with("dead_units", dead.len())
                .with("units", p.fire_counts.len())
                .with("unit_indices", dead)
                .with("counted_per", if p.per_channel { "channel" } else { "unit" })
                .with("examples", p.examples)
                .with("passes", ps.len())
                .fixes(if large_updates {
                    vec![
                        super::lr_fix("lower the learning rate", run, 0.1),
                        Fix::text("use He init").set("model.init", "he"),
                        Fix::text("use leaky relu").set("model.activation", "leaky_relu"),
                        Fix::text("start biases slightly positive").set("model.bias_init", 0.01),
                    ]
                } else {
                    vec![
                        Fix::text("start biases slightly positive").set("model.bias_init", 0.01),
                        Fix::text("use He init").set("model.init", "he"),
                        Fix::text("use leaky relu").set("model.activation", "leaky_relu"),
                    ]
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass over `units` units of which `dead` never fired.
    fn pass(layer: usize, step: usize, units: usize, dead: usize) -> DeadUnitPass {
        let mut p = DeadUnitPass::new(layer, "relu", step, units);
        p.examples = 1000;
        for (i, c) in p.fire_counts.iter_mut().enumerate() {
            *c = if i < dead { 0 } else { 17 };
        }
        p
    }

    #[test]
    fn borderline_fractions() {
        // 1000 units: 199 dead (19.9%) is info, 200 (20%) a warning; 399 a warning, 400 an error.
        assert!(detect(&[pass(1, 0, 1000, 0)], &RunInfo::default(), false).is_empty());
        assert_eq!(detect(&[pass(1, 0, 1000, 1)], &RunInfo::default(), false)[0].severity, Severity::Info);
        assert_eq!(detect(&[pass(1, 0, 1000, 199)], &RunInfo::default(), false)[0].severity, Severity::Info);
        assert_eq!(detect(&[pass(1, 0, 1000, 200)], &RunInfo::default(), false)[0].severity, Severity::Warning);
        assert_eq!(detect(&[pass(1, 0, 1000, 399)], &RunInfo::default(), false)[0].severity, Severity::Warning);
        let f = detect(&[pass(3, 50, 1000, 400)], &RunInfo::default(), false);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].code, Code::DeadRelu);
        assert_eq!(f[0].where_, "layer 3 (relu)");
        assert_eq!(f[0].layer, Some(3));
        assert_eq!(f[0].step, Some(50));
        assert_eq!(f[0].number("dead_fraction"), Some(0.4));
        assert_eq!(f[0].evidence["unit_indices"].as_array().unwrap().len(), 400);
        assert_eq!(f[0].evidence["unit_indices"][399], 399);
        assert_eq!(f[0].fix[0].set["model.bias_init"], 0.01);
        let mut run = RunInfo::default();
        run.settings.insert("train.lr".into(), 0.5.into());
        let f = detect(&[pass(3, 50, 1000, 400)], &run, true);
        assert_eq!(f[0].fix[0].set["train.lr"], 0.05, "large updates: lower the rate first");
    }

    #[test]
    fn latest_pass_per_layer_and_only_relu() {
        let f = detect(&[pass(1, 900, 10, 1), pass(1, 100, 10, 5), pass(3, 900, 10, 5)], &RunInfo::default(), false);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].where_, "layer 1 (relu)");
        assert_eq!(f[0].step, Some(900));
        assert_eq!(f[0].number("dead_units"), Some(1.0));
        assert_eq!(f[1].where_, "layer 3 (relu)");
        let mut leaky = pass(1, 0, 10, 10);
        leaky.kind = "leaky_relu".into();
        assert!(detect(&[leaky], &RunInfo::default(), false).is_empty());
        let mut empty = pass(1, 0, 10, 10);
        empty.examples = 0;
        assert!(detect(&[empty], &RunInfo::default(), false).is_empty());
    }
}
