//! `saturation`: sigmoid/tanh units sit where their local gradient is ~0.
//!
//! Reads [`LayerStats::saturated_fraction`] of sigmoid and tanh layers (the saturated region
//! is defined in [`crate::doctor::stats`]: sigmoid z < 0.01 or z > 0.99, tanh |t| > 0.99),
//! and [`GateStats`] of recurrent layers: the tanh RNN cell, and the LSTM's sigmoid gates
//! i, f, o, its tanh candidate g and tanh(c). Same thresholds and persistence rule for both.
//!
//! One exception for the LSTM: a forget gate pinned **open** (f > 0.99) is how an LSTM
//! keeps a memory over many steps (the cell-state path then passes the gradient back
//! unchanged), so only a forget gate pinned shut counts; [`GateStats`] records the gate as
//! measured and the recorder counts f's saturation on the closed side only.

use super::{group_by, layer_where, persistent};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{max_local_grad, GateStats, LayerStats};

/// A layer is reported when at least this share of its outputs is saturated (in at least
/// half its samples). Half the units passing under 4% (sigmoid) or 2% (tanh) of the best-case
/// gradient: our cut-off for "most of the layer"; Glorot & Bengio 2010 (Fig. 2) show the top
/// sigmoid layer of a standard-initialised net driven to 0 for nearly all units.
pub const SATURATED_FRACTION_WARN: f64 = 0.5;

/// At least this share saturated is an error: nine units in ten pass almost no gradient, so
/// the layers below hardly train (the too-large-init case of Karpathy's "Yes you should
/// understand backprop", where z is "almost binary").
pub const SATURATED_FRACTION_ERROR: f64 = 0.9;

/// The fixes for saturated feed-forward units, best first.
fn feedforward_fixes() -> Vec<Fix> {
    vec![
        Fix::text("use Xavier init").set("model.init", "xavier"),
        Fix::text("standardise inputs").set("data.normalize", true),
        Fix::text("use relu with He init").set("model.activation", "relu").set("model.init", "he"),
        Fix::text("add batch norm").set("model.batchnorm", true),
    ]
}

/// Findings for every sigmoid/tanh layer and every recurrent gate that is persistently
/// saturated.
pub fn detect(layers: &[LayerStats], gates: &[GateStats]) -> Vec<Finding> {
    let mut out = detect_layers(layers);
    out.extend(detect_gates(gates));
    out
}

/// Recurrent gates: one finding per (layer, gate).
pub fn detect_gates(gates: &[GateStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((layer, gate), samples) in group_by(gates, |g| (g.layer, g.gate.clone()), |g| g.step) {
        let Some((first, flagged)) = persistent(&samples, |g| g.saturated_fraction >= SATURATED_FRACTION_WARN) else {
            continue;
        };
        let severity = if persistent(&samples, |g| g.saturated_fraction >= SATURATED_FRACTION_ERROR).is_some() {
            Severity::Error
        } else {
            Severity::Warning
        };
        let act = first.activation.as_str();
        let max = max_local_grad(act).unwrap_or(1.0);
        let (local, region) =
            if act == "sigmoid" { ("z(1-z)", "z < 0.01 or z > 0.99") } else { ("1-t^2", "|t| > 0.99") };
        let what = match (first.cell.as_str(), gate.as_str()) {
            ("rnn", _) => "the RNN cell's tanh".to_string(),
            (_, "c") => "the LSTM's tanh(c)".to_string(),
            (_, g) => format!("the LSTM's {g} gate ({act})"),
        };
        let why = format!(
            "{:.0}% of {what}'s values sit in its flat tails ({region}), where the local gradient {local} (at most \
             {max}) is nearly 0: back through time every step multiplies the gradient by it, so almost nothing \
             reaches the earlier steps or the weights.",
            100.0 * first.saturated_fraction
        );
        let where_ = if first.cell == "rnn" {
            layer_where(layer, &first.cell)
        } else {
            format!("{} gate {gate}", layer_where(layer, &first.cell))
        };
        let mut fixes = vec![
            Fix::text("initialise Wh at spectral radius 1").set("model.whh_radius", 1.0),
            Fix::text("use Xavier init").set("model.init", "xavier"),
            Fix::text("standardise inputs").set("data.normalize", true),
        ];
        if first.cell == "rnn" {
            fixes.push(Fix::text("use an LSTM").set("model.kind", "lstm"));
        }
        out.push(
            Finding::new(Code::Saturation, severity, where_, Some(first.step), why)
                .at_layer(layer)
                .with("saturated_fraction", first.saturated_fraction)
                .with("activation", act)
                .with("gate", gate.as_str())
                .with("mean_local_grad", first.mean_local_grad)
                .with("max_local_grad", max)
                .with("local_grad_ratio", first.mean_local_grad / max)
                .with("samples", samples.len())
                .with("flagged_samples", flagged)
                .with("threshold", SATURATED_FRACTION_WARN)
                .fixes(fixes),
        );
    }
    out
}

/// Feed-forward sigmoid/tanh layers only.
pub fn detect_layers(layers: &[LayerStats]) -> Vec<Finding> {
    let relevant =
        layers.iter().filter(|l| matches!(l.kind.as_str(), "sigmoid" | "tanh") && l.saturated_fraction.is_some());
    let mut out = Vec::new();
    for (index, samples) in group_by(relevant, |l| l.index, |l| l.step) {
        let frac = |l: &LayerStats| l.saturated_fraction.unwrap_or(0.0);
        let Some((first, flagged)) = persistent(&samples, |l| frac(l) >= SATURATED_FRACTION_WARN) else {
            continue;
        };
        let severity = if persistent(&samples, |l| frac(l) >= SATURATED_FRACTION_ERROR).is_some() {
            Severity::Error
        } else {
            Severity::Warning
        };
        let kind = first.kind.as_str();
        let max = max_local_grad(kind).expect("sigmoid and tanh have a maximum local gradient");
        let (local, region) =
            if kind == "sigmoid" { ("z(1-z)", "z < 0.01 or z > 0.99") } else { ("1-t^2", "|t| > 0.99") };
        let f = frac(first);
        let why = format!(
            "{kind}'s local gradient {local} is at most {max} and nearly 0 in its flat tails ({region}); \
             {:.0}% of this layer's outputs sit there, so almost no gradient passes through it to the layers below.",
            100.0 * f
        );
        let mut finding = Finding::new(Code::Saturation, severity, layer_where(index, kind), Some(first.step), why)
            .at_layer(index)
            .with("saturated_fraction", f)
            .with("activation", kind)
            .with("max_local_grad", max)
            .with("act_mean", first.act_mean)
            .with("act_std", first.act_std)
            .with("samples", samples.len())
            .with("flagged_samples", flagged)
            .with("threshold", SATURATED_FRACTION_WARN);
        if let Some(g) = first.mean_local_grad {
            finding = finding.with("mean_local_grad", g).with("local_grad_ratio", g / max);
        }
        out.push(finding.fixes(feedforward_fixes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::detectors::testutil::layer;

    fn sat(index: usize, kind: &str, step: usize, f: f64) -> LayerStats {
        let mut l = layer(index, kind, step);
        l.saturated_fraction = Some(f);
        l.mean_local_grad = Some(if kind == "sigmoid" { 0.25 * (1.0 - f) } else { 1.0 - f });
        l
    }

    #[test]
    fn borderline_warning() {
        let eps = 1e-9;
        assert!(detect_layers(&[sat(1, "sigmoid", 0, SATURATED_FRACTION_WARN - eps)]).is_empty());
        let f = detect_layers(&[sat(1, "sigmoid", 0, SATURATED_FRACTION_WARN + eps)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, Code::Saturation);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].where_, "layer 1 (sigmoid)");
        assert_eq!(f[0].text("activation"), Some("sigmoid"));
        assert_eq!(f[0].number("max_local_grad"), Some(0.25));
        assert!(f[0].number("mean_local_grad").unwrap() < 0.25);
        assert_eq!(f[0].fix[0].set["model.init"], "xavier");
        assert_eq!(f[0].layer, Some(1));
    }

    #[test]
    fn borderline_error_tanh() {
        let eps = 1e-9;
        let w = detect_layers(&[sat(3, "tanh", 5, SATURATED_FRACTION_ERROR - eps)]);
        assert_eq!(w[0].severity, Severity::Warning);
        let e = detect_layers(&[sat(3, "tanh", 5, SATURATED_FRACTION_ERROR + eps)]);
        assert_eq!(e[0].severity, Severity::Error);
        assert_eq!(e[0].where_, "layer 3 (tanh)");
        assert_eq!(e[0].step, Some(5));
        assert_eq!(e[0].number("max_local_grad"), Some(1.0));
    }

    #[test]
    fn must_persist_and_ignores_other_kinds() {
        // Saturated at 1 of 3 samples: not reported; at 2 of 3: reported from the first.
        let once = [sat(1, "sigmoid", 0, 0.1), sat(1, "sigmoid", 10, 0.95), sat(1, "sigmoid", 20, 0.1)];
        assert!(detect_layers(&once).is_empty());
        let twice = [sat(1, "sigmoid", 20, 0.95), sat(1, "sigmoid", 0, 0.1), sat(1, "sigmoid", 10, 0.95)];
        let f = detect_layers(&twice);
        assert_eq!(f[0].step, Some(10));
        assert_eq!(f[0].number("flagged_samples"), Some(2.0));
        let mut relu = layer(1, "relu", 0);
        relu.saturated_fraction = Some(1.0);
        assert!(detect_layers(&[relu]).is_empty());
    }

    fn gate(gate: &str, act: &str, step: usize, f: f64) -> GateStats {
        GateStats {
            layer: 0,
            cell: "lstm".into(),
            gate: gate.into(),
            activation: act.into(),
            step,
            count: 2048,
            saturated_fraction: f,
            mean_local_grad: 0.25 * (1.0 - f),
        }
    }

    /// LSTM gates and the RNN cell are judged per gate, with the same thresholds.
    #[test]
    fn recurrent_gates() {
        let eps = 1e-9;
        assert!(detect(&[], &[gate("i", "sigmoid", 0, SATURATED_FRACTION_WARN - eps)]).is_empty());
        let f = detect(
            &[],
            &[gate("o", "sigmoid", 0, 0.3), gate("o", "sigmoid", 10, 0.95), gate("o", "sigmoid", 20, 0.96)],
        );
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].severity, f[0].step, f[0].layer), (Severity::Error, Some(10), Some(0)));
        assert_eq!(f[0].where_, "layer 0 (lstm) gate o");
        assert_eq!(f[0].text("gate"), Some("o"));
        assert!(f[0].why.contains("o gate (sigmoid)"), "{}", f[0].why);
        let mut rnn = gate("h", "tanh", 0, 0.7);
        rnn.cell = "rnn".into();
        let f = detect(&[], &[rnn]);
        assert_eq!((f[0].severity, f[0].where_.as_str()), (Severity::Warning, "layer 0 (rnn)"));
        assert!(f[0].fix.iter().any(|x| x.set.get("model.kind").is_some_and(|v| v == "lstm")));
    }
}
