//! The doctor: recorded statistics -> detectors -> findings.
//!
//! Data flows one way:
//!
//! ```text
//! trainer + layers --(Probe / Observer hooks)--> probes --> RecordedStats   (stats)
//! RecordedStats --> one pure detector per finding code --> Vec<Finding>      (detectors)
//! Vec<Finding> --> causes linked, roots first, ids, consistent advice        (causes)
//! Vec<Finding> --> terminal / JSON (Report) / HTML                           (finding)
//! findings before/after a treatment --> plan and verdict                     (treatment)
//! ```
//!
//! * [`stats`] holds the recorded statistics: plain, serialisable data that probes fill
//!   cheaply and incrementally (accumulators that take one value or tensor at a time and
//!   never copy a tensor).
//! * [`detectors`] has one file per finding code. Each detector is a **pure function** of
//!   the statistics: no training, no sampling, no clock, no state. That is why every
//!   threshold can be unit-tested on hand-made statistics just below and just above it, why
//!   a run's statistics can be saved and re-diagnosed later (or with other thresholds), and
//!   why the same code judges a TOML experiment and a model built in Rust.
//! * [`causes`] links consequences to their causes (a divergence explains the dead units
//!   measured after it; a gradient vanishing through depth explains the lower layers' tiny
//!   updates), lists root causes first and makes the advice consistent (one value per
//!   setting, learning rates within bounds, no advice for a symptom).
//! * [`finding`] is the output: [`Finding`] and the `--json` [`Report`] (version 2).
//! * [`treatment`] turns the root causes' fixes into one set of settings ([`treatment::plan`])
//!   and judges a retrained run against the original from the metrics ([`treatment::compare`]).
//!
//! ```
//! use leaky::doctor::{diagnose, stats::{InitLoss, RecordedStats}, Code};
//!
//! let mut stats = RecordedStats::default();
//! stats.init_loss = Some(InitLoss::softmax(9.0, 10)); // ln 10 = 2.30 expected
//! let findings = diagnose(&stats);
//! assert_eq!(findings[0].code, Code::BadInitLoss);
//! assert_eq!(findings[0].to_json()["code"], "bad_init_loss");
//! ```
//!
//! The [`Doctor`] attaches to a model built in Rust: it is an [`crate::train::Observer`] (and a
//! [`crate::train::SeqObserver`] for recurrent models), so the trainer feeds it while it trains.
//! Here, a sigmoid MLP with weights of std 3 on the spiral data saturates:
//!
//! ```
//! use leaky::data::spiral;
//! use leaky::doctor::{Code, Doctor, DoctorConfig};
//! use leaky::nn::{Activation, MlpSpec};
//! use leaky::tensor::Init;
//! use leaky::train::{fit, TrainConfig};
//!
//! let data = spiral(100, 3, 0.2, 0);                   // x: (300, 2), 3 classes
//! let (train, val) = data.split(0.2, 0);
//! let spec = MlpSpec {
//!     input_dim: 2, hidden: vec![50, 50], output_dim: 3,
//!     activation: Activation::Sigmoid, init: Init::Normal { std: 3.0 },
//!     bias_init: 0.0, batchnorm: false, dropout_keep: None,
//! };
//! let mut model = spec.build::<f32>(0);
//! let cfg = TrainConfig { epochs: 3, ..TrainConfig::default() };
//! let mut doctor = Doctor::new(DoctorConfig::default(), cfg.loss, 3);
//! fit(&mut model, &train, &val, &cfg, &mut doctor);
//! doctor.dead_unit_pass(&mut model, &train);           // full pass, for dead_relu
//! let findings = doctor.diagnose();
//! assert!(findings.iter().any(|f| f.code == Code::Saturation), "{findings:#?}");
//! ```

pub mod causes;
pub mod detectors;
pub mod finding;
pub mod recorder;
pub mod stats;
pub mod treatment;

pub use finding::{Code, Evidence, Finding, Fix, Report, Severity};
pub use recorder::{Doctor, DoctorConfig};
pub use stats::{RecordedStats, RunInfo};
pub use treatment::{Metrics, Treatment, Verdict};

/// Every detector's findings on `all`, unlinked and unsorted (no ids, no causes).
pub fn detect_all(all: &RecordedStats) -> Vec<Finding> {
    let run = &all.run;
    let mut out = Vec::new();
    out.extend(detectors::non_finite::detect(all.non_finite.as_ref(), &all.global_norms, run));
    out.extend(detectors::diverging_loss::detect(&all.losses, all.input.as_ref(), run));
    out.extend(detectors::not_learning::detect(&all.epochs, all.init_loss.as_ref(), run));
    out.extend(detectors::unnormalized_input::detect(all.input.as_ref()));
    out.extend(detectors::bad_init_loss::detect(all.init_loss.as_ref()));
    out.extend(detectors::saturation::detect(&all.layers, &all.gates));
    out.extend(detectors::vanishing_gradient::detect(&all.layers, &all.bptt));
    let small_steps = detectors::update_ratio::largest_median_ratio(&all.params)
        .is_some_and(|r| r <= detectors::update_ratio::UPDATE_RATIO_TARGET);
    out.extend(detectors::exploding_gradient::detect(&all.layers, &all.bptt, &all.global_norms, small_steps, run));
    let ratios = detectors::update_ratio::detect(&all.params, &all.global_norms, run);
    let large_updates = ratios.iter().any(|f| f.text("direction") == Some("too_large"));
    out.extend(detectors::dead_relu::detect(&all.dead_units, run, large_updates));
    out.extend(detectors::zero_gradient::detect(&all.flat_ops));
    out.extend(detectors::batchnorm_stats::detect(&all.batchnorm));
    out.extend(ratios);
    out
}

/// Run every detector on `all`, link consequences to causes and make the advice consistent
/// ([`causes::analyse`]). The findings come root causes first (by severity, errors first, then
/// step, findings without a step first, then code and place), each followed by its
/// consequences; ids `F1`, `F2`, ... follow that order.
pub fn diagnose(all: &RecordedStats) -> Vec<Finding> {
    causes::analyse(detect_all(all), &all.run)
}

/// Sort findings by severity, step, code and place (stable), ignoring causes; [`diagnose`]
/// orders by causes first.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (a.severity, a.step, a.code).cmp(&(b.severity, b.step, b.code)).then_with(|| a.where_.cmp(&b.where_))
    });
}

#[cfg(test)]
mod tests {
    use super::detectors::testutil::{bptt, grad_layer};
    use super::stats::*;
    use super::*;

    #[test]
    fn healthy_statistics_give_no_findings() {
        let mut acc = InputAccumulator::new(2);
        acc.push_row([1.0, -1.0]);
        acc.push_row([-1.0, 1.0]);
        let s = RecordedStats {
            init_loss: Some(InitLoss::softmax(2.5, 10)),
            layers: vec![
                grad_layer(0, "affine", 0, 0.5),
                grad_layer(1, "relu", 0, 0.7),
                grad_layer(2, "affine", 0, 1.0),
            ],
            bptt: vec![bptt(0, 20, 0.98, 0.95)],
            input: Some(acc.finish()),
            ..Default::default()
        };
        assert!(diagnose(&s).is_empty(), "{:?}", diagnose(&s));
    }

    #[test]
    fn findings_without_causes_are_sorted_by_severity_then_step() {
        let mut s = RecordedStats {
            init_loss: Some(InitLoss::softmax(9.0, 10)), // warning, step 0
            bptt: vec![bptt(3, 11, 2.5, 1.4)],           // exploding in time (2.5^10 ~ 9.5e3): warning, step 3
            ..Default::default()
        };
        s.input = Some(InputStats {
            features: 4,
            examples: 10,
            feature_mean_abs_max: 9.0,
            feature_mean_abs_mean: 5.0,
            feature_std_min: 1.0,
            feature_std_max: 1.0,
            feature_std_mean: 1.0,
            constant_features: 0,
        }); // warning, no step
        s.record_non_finite(NonFinite {
            step: 40,
            pass: Pass::Forward,
            layer_index: Some(0),
            layer_kind: "affine".into(),
            op: "matmul".into(),
            nan_count: 1,
            inf_count: 0,
        }); // error, step 40
            // Unlinked, by severity then step.
        let mut plain = detect_all(&s);
        sort_findings(&mut plain);
        let got: Vec<(Severity, Option<usize>, Code)> = plain.iter().map(|f| (f.severity, f.step, f.code)).collect();
        assert_eq!(
            got,
            [
                (Severity::Error, Some(40), Code::NonFinite),
                (Severity::Warning, None, Code::UnnormalizedInput),
                (Severity::Warning, Some(0), Code::BadInitLoss),
                (Severity::Warning, Some(3), Code::ExplodingGradient),
            ]
        );
        // Diagnosed: the NaN at step 40 follows the explosion at step 3 (a cause rule), so it
        // is listed under it; the roots keep the severity-then-step order.
        let f = diagnose(&s);
        let got: Vec<(&str, Code, Option<&str>)> =
            f.iter().map(|f| (f.id.as_str(), f.code, f.caused_by.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("F1", Code::UnnormalizedInput, None),
                ("F2", Code::BadInitLoss, None),
                ("F3", Code::ExplodingGradient, None),
                ("F4", Code::NonFinite, Some("F3")),
            ]
        );
        let r = Report::new(serde_json::json!({}), f, serde_json::json!({}));
        assert_eq!(r.worst(), Some(Severity::Error));
    }
}
