//! `vanishing_gradient`: the gradient shrinks through depth (`axis: "depth"`, from the
//! input-gradient RMS of the lowest and highest probed layers, [`LayerStats`]) or back
//! through time (`axis: "time"`, from `||dL/dh_t||` of a recurrent layer, [`BpttStats`]).
//!
//! The time axis reads the **total** gradient into each hidden state. With a loss at every
//! time step each h_t also receives its own step's loss gradient, which masks a vanishing
//! long-range signal; the measurement is sharpest for tasks whose loss sits at the end of
//! the sequence (adding, copy).

use super::{
    depth_samples, layer_where, persistent, radius_phrase, squashing_kinds, time_samples, with_depth_evidence,
    with_time_evidence,
};
use crate::doctor::finding::{Code, Finding, Fix, Severity};
use crate::doctor::stats::{BpttStats, LayerStats};

/// Depth: reported when the lowest layer's input-gradient RMS is at most this fraction of
/// the highest layer's: three orders of magnitude, so with one learning rate the lower
/// layers move a thousand times slower. (Our cut-off; the effect is Glorot & Bengio 2010,
/// Section 4.2, back-propagated gradients shrinking from the top layer down with sigmoid
/// and tanh, and Hochreiter 1991.)
pub const DEPTH_VANISHING_RATIO: f64 = 1e-3;

/// Depth: at most this fraction (six orders of magnitude) is an error: the lower layers
/// effectively do not train.
pub const DEPTH_VANISHING_ERROR_RATIO: f64 = 1e-6;

/// Time: reported when `||dL/dh_0|| / ||dL/dh_{T-1}||` is at most this. Pascanu, Mikolov &
/// Bengio 2013 ("On the difficulty of training recurrent neural networks", Section 2.1):
/// with tanh, a spectral radius of Wh below 1 is sufficient for the long-term components to
/// vanish exponentially in T. Three decades is our cut-off for "vanished", as for depth.
pub const TIME_VANISHING_RATIO: f64 = 1e-3;

/// Time: at most this fraction (six decades) is an error.
pub const TIME_VANISHING_ERROR_RATIO: f64 = 1e-6;

/// Findings for a gradient that vanishes through depth (at most one) and back through time
/// (one per recurrent layer).
pub fn detect(layers: &[LayerStats], bptt: &[BpttStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(detect_depth(layers));
    out.extend(detect_time(bptt));
    out
}

/// The depth axis only.
pub fn detect_depth(layers: &[LayerStats]) -> Option<Finding> {
    let samples = depth_samples(layers);
    let refs: Vec<_> = samples.iter().collect();
    let (s, flagged) = persistent(&refs, |s| s.ratio <= DEPTH_VANISHING_RATIO)?;
    let severity = if persistent(&refs, |s| s.ratio <= DEPTH_VANISHING_ERROR_RATIO).is_some() {
        Severity::Error
    } else {
        Severity::Warning
    };
    let (bottom, top) = (s.bottom(), s.top());
    let squash = squashing_kinds(s);
    let local = match squash.as_slice() {
        [] => "its activation's local gradient".to_string(),
        ["sigmoid"] => "sigmoid's local gradient z(1-z) <= 0.25".to_string(),
        ["tanh"] => "tanh's local gradient 1-t^2 <= 1".to_string(),
        _ => "the activations' local gradients (sigmoid's z(1-z) <= 0.25, tanh's 1-t^2 <= 1)".to_string(),
    };
    let why = format!(
        "The backward pass multiplies the gradient at every layer by W^T and by {local}; here it shrank by ~{:.2} \
         per layer, so layer {} receives {:.1e} of the gradient (RMS) at layer {} and the lower layers barely learn.",
        s.per_layer_factor(),
        bottom.0,
        s.ratio,
        top.0
    );
    let fixes: Vec<Fix> = if squash.is_empty() {
        vec![
            Fix::text("use He init").set("model.init", "he"),
            Fix::text("add batch norm").set("model.batchnorm", true),
            Fix::text("use fewer layers (model.hidden)"),
        ]
    } else {
        vec![
            Fix::text("use relu with He init").set("model.activation", "relu").set("model.init", "he"),
            Fix::text("add batch norm").set("model.batchnorm", true),
            Fix::text("use Xavier init").set("model.init", "xavier"),
        ]
    };
    let f = Finding::new(Code::VanishingGradient, severity, layer_where(bottom.0, &bottom.1), Some(s.step), why)
        .at_layer(bottom.0);
    Some(with_depth_evidence(f, s, samples.len(), flagged, DEPTH_VANISHING_RATIO).fixes(fixes))
}

/// The time axis only: one finding per recurrent layer.
pub fn detect_time(bptt: &[BpttStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (layer, samples) in time_samples(bptt) {
        let ratio = |b: &BpttStats| b.ratio().expect("time samples have a ratio");
        let Some((b, flagged)) = persistent(&samples, |b| ratio(b) <= TIME_VANISHING_RATIO) else {
            continue;
        };
        let severity = if persistent(&samples, |b| ratio(b) <= TIME_VANISHING_ERROR_RATIO).is_some() {
            Severity::Error
        } else {
            Severity::Warning
        };
        let g = b.growth_per_step().expect("time samples have a ratio");
        let t = b.norms_per_t.len();
        let (why, fixes) = if b.kind == "lstm" {
            (
                format!(
                    "Back through time the gradient reaches earlier steps through the cell state, scaled by the \
                     forget gate, and through Wh^T{}; it shrank by ~{g:.2} per step, so h_0 receives {:.1e} of the \
                     gradient at h_{} and long-range dependencies are not learned.",
                    radius_phrase(b),
                    ratio(b),
                    t - 1
                ),
                vec![
                    Fix::text("initialise Wh at spectral radius 1").set("model.whh_radius", 1.0),
                    Fix::text("use shorter sequences (data.seq_len)"),
                ],
            )
        } else {
            (
                format!(
                    "Back through time every step multiplies the gradient by diag(1-h^2) Wh^T{}; it shrank by ~{g:.2} \
                     per step, so h_0 receives {:.1e} of the gradient at h_{} and long-range dependencies cannot be \
                     learned (Pascanu et al. 2013).",
                    radius_phrase(b),
                    ratio(b),
                    t - 1
                ),
                vec![
                    Fix::text("use an LSTM").set("model.kind", "lstm"),
                    Fix::text("initialise Wh at spectral radius 1").set("model.whh_radius", 1.0),
                    Fix::text("use shorter sequences (data.seq_len)"),
                ],
            )
        };
        let f = Finding::new(Code::VanishingGradient, severity, layer_where(layer, &b.kind), Some(b.step), why)
            .at_layer(layer);
        out.push(with_time_evidence(f, b, samples.len(), flagged, TIME_VANISHING_RATIO).fixes(fixes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::detectors::testutil::{bptt, grad_layer, layer};

    fn net(step: usize, ratio: f64) -> Vec<LayerStats> {
        vec![
            grad_layer(0, "affine", step, ratio),
            grad_layer(1, "sigmoid", step, ratio.sqrt()),
            grad_layer(2, "affine", step, 1.0),
            layer(3, "softmax", step),
        ]
    }

    #[test]
    fn depth_borderline() {
        let k = 1.0 + 1e-6;
        assert!(detect(&net(0, DEPTH_VANISHING_RATIO * k), &[]).is_empty());
        let f = detect(&net(0, DEPTH_VANISHING_RATIO / k), &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, Code::VanishingGradient);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].where_, "layer 0 (affine)");
        assert_eq!(f[0].text("axis"), Some("depth"));
        assert_eq!(f[0].number("top_layer"), Some(2.0));
        assert!(f[0].why.contains("0.25"));
        assert_eq!(f[0].fix[0].set["model.activation"], "relu");
        assert_eq!(f[0].layer, Some(0));
        let w = detect(&net(0, DEPTH_VANISHING_ERROR_RATIO * k), &[]);
        assert_eq!(w[0].severity, Severity::Warning);
        let e = detect(&net(0, DEPTH_VANISHING_ERROR_RATIO / k), &[]);
        assert_eq!(e[0].severity, Severity::Error);
    }

    #[test]
    fn depth_must_persist() {
        let mut ls = net(0, 1e-5);
        ls.extend(net(10, 0.5));
        ls.extend(net(20, 0.5));
        assert!(detect(&ls, &[]).is_empty());
        ls.extend(net(30, 1e-4));
        let f = detect(&ls, &[]);
        assert_eq!(f[0].step, Some(0));
        assert_eq!(f[0].number("samples"), Some(4.0));
        assert_eq!(f[0].number("flagged_samples"), Some(2.0));
    }

    #[test]
    fn time_borderline() {
        // 21 steps: ratio = g^20.
        let g_at = |r: f64| r.powf(1.0 / 20.0);
        let k = 1.0 + 1e-6;
        assert!(detect(&[], &[bptt(0, 21, g_at(TIME_VANISHING_RATIO * k), 0.5)]).is_empty());
        let f = detect(&[], &[bptt(4, 21, g_at(TIME_VANISHING_RATIO / k), 0.5)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].where_, "layer 1 (rnn)");
        assert_eq!(f[0].step, Some(4));
        assert_eq!(f[0].text("axis"), Some("time"));
        assert_eq!(f[0].number("whh_spectral_radius"), Some(0.5));
        assert!((f[0].number("growth_per_step").unwrap() - g_at(TIME_VANISHING_RATIO / k)).abs() < 1e-12);
        assert_eq!(f[0].fix[0].set["model.kind"], "lstm");
        let w = detect(&[], &[bptt(0, 21, g_at(TIME_VANISHING_ERROR_RATIO * k), 0.5)]);
        assert_eq!(w[0].severity, Severity::Warning);
        let e = detect(&[], &[bptt(0, 21, g_at(TIME_VANISHING_ERROR_RATIO / k), 0.5)]);
        assert_eq!(e[0].severity, Severity::Error);
        // Growing norms are not vanishing.
        assert!(detect(&[], &[bptt(0, 21, 1.5, 1.5)]).is_empty());
    }
}
