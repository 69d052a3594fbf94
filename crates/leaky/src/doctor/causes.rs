//! Cause analysis: which findings are consequences of which, run after the detectors.
//!
//! Every detector judges one symptom on its own. Many symptoms follow from another: once
//! the loss diverges, the weights are huge or NaN, so units die, gradients read as zero (or
//! NaN, which the depth and time measurements skip) and update ratios go wild; a gradient
//! that vanishes through depth leaves the lower layers with tiny updates, which is not a
//! learning-rate problem. Treating the symptom (raising the learning rate for those layers)
//! makes things worse, so the doctor links each consequence to its cause, lists root causes
//! first with their consequences under them, and gives advice only for the causes.
//!
//! # The rules
//!
//! A finding gets at most one cause (the first rule that applies, in this order); a link
//! that would close a cycle is not made. "Step" is a finding's first step; the divergence
//! step `d` is the earlier of the `diverging_loss` and `non_finite` steps.
//!
//! 1. **Divergence pair.** With both `diverging_loss` and `non_finite`: when the loss rose
//!    (finitely) past its threshold before the first NaN/Inf, the NaN is a consequence of the
//!    divergence; otherwise the divergence (a loss that jumped to NaN) is a consequence of the
//!    op that produced the NaN. The other one is the *divergence head*.
//! 2. **Explosion causes divergence.** An `exploding_gradient` first seen at or before `d`
//!    is the cause of the divergence head (the earliest one).
//! 3. **Consequences of divergence.** `dead_relu`, `zero_gradient`, `vanishing_gradient`,
//!    `exploding_gradient`, `saturation` and `update_ratio` findings first seen at or after `d`
//!    are consequences of the divergence head when it is an error (the loss did not recover):
//!    they were measured on a model the divergence had already wrecked (huge or NaN weights; a NaN gradient is skipped by the depth and time
//!    measurements, a saturated one reads as exactly 0).
//!
//!    (3b) After a divergence that recovered (a warning), a `dead_relu` first seen at or
//!    after it follows from it too: units pushed negative for every example during the spike
//!    stay dead when the loss comes back down.
//! 4. **Explosion, then vanishing or saturation.** A `vanishing_gradient` or `saturation`
//!    first seen after an `exploding_gradient` of the same layer (or any layer, for depth) is
//!    its consequence: the exploded updates threw the weights into the saturated region,
//!    where the gradient is ~0.
//! 5. **Saturation causes vanishing.** A `vanishing_gradient` through depth with a saturated
//!    layer between its bottom and top layer (inclusive), or through time with a saturated
//!    gate or cell in the same recurrent layer, is a consequence of that saturation (the
//!    first listed).
//! 6. **Vanishing through depth causes tiny lower-layer updates.** An `update_ratio` that is
//!    too small in a layer below the vanishing finding's top layer is its consequence: the
//!    steps are small because the gradient is, and raising the learning rate would blow up
//!    the upper layers.
//!
//!    (6b) **An explosion under clipping causes tiny updates.** An `update_ratio` that is too
//!    small because the global clip cut most sampled steps (evidence `clipped: true`) follows
//!    from the `exploding_gradient` finding: the exploding part takes the whole clipped budget.
//! 7. **A zero-gradient op causes tiny updates.** An `update_ratio` that is too small while a
//!    `zero_gradient` finding exists (else, when its gradient is exactly 0, a `dead_relu`) is
//!    a consequence of it.
//! 8. **Batch norm statistics explain what follows them in eval mode.** A `batchnorm_stats`
//!    or `dead_relu` finding in a layer above a `batchnorm_stats` error or warning is its
//!    consequence (the first such layer's): eval mode normalises with the running statistics,
//!    so a mismatch shifts every activation after the layer, and the dead-unit pass runs in
//!    eval mode.
//! 9. **Not learning has a reason.** `not_learning` is a consequence of the root of the first
//!    error/warning finding in this order of codes: divergence, `non_finite`,
//!    `zero_gradient`, `batchnorm_stats`, `dead_relu`, `saturation`, `vanishing_gradient`,
//!    `exploding_gradient`, `update_ratio`, `unnormalized_input`, `bad_init_loss`.
//!
//! # Order and ids
//!
//! Root causes are sorted by severity (errors first), then step (findings without a step,
//! about the data or the whole run, first), then code and place; each root is followed by
//! its consequences, recursively, in the same order. Ids `F1`, `F2`, ... follow that order.
//!
//! # Consistent advice ([`reconcile`])
//!
//! * A consequence's advice is to fix its cause: its one fix points at the cause's id (its
//!   own fixes would treat the symptom: raising the learning rate for layers whose gradient
//!   vanished, or "use fewer layers" for a gradient that is zero because the run diverged).
//! * One learning rate for layers that step too far and layers that step too little: a
//!   root `update_ratio` finding that is `too_large` in a run that also has `too_small` ones
//!   first says to fix the root cause of the slow layers (or, when they are roots themselves,
//!   that a lower rate slows them further), and keeps its learning-rate cut (and clipping) as
//!   the next step, in its text only: `--treat` does not apply them with the first.
//! * A fix whose settings are all already in effect (the run's current values,
//!   `RunInfo::settings`) is dropped; fixes are never split (a fix is applied whole).
//! * A suggested `train.lr` stays within [lr/100, lr*10] of the current one, except that a
//!   cut that reached lr/100 goes as deep as the largest too-large update ratio measured in
//!   the run calls for (to `UPDATE_RATIO_LOWER_TO`), and a raise that reached lr*10 goes as
//!   high as the largest too-small ratio of a root cause calls for (to
//!   `UPDATE_RATIO_TARGET`): measured steps a thousand times off are not a symptom of
//!   something else.
//! * One value per setting: in listing order, the first fix to set a key claims it; a later
//!   fix that sets it to another value loses its settings (all of them: a fix is applied
//!   whole or not at all), and its text says so ("not set: train.loss = "huber"; train.loss
//!   = "huber", an alternative to F1 fix 1's train.loss = "softmax"").

use super::finding::{Code, Finding, Fix, Severity};
use super::stats::RunInfo;
use serde_json::Value;
use std::collections::BTreeMap;

/// Link consequences to causes, order the findings (roots first, consequences under
/// them), assign ids and `caused_by`, and [`reconcile`] their advice. `findings` is what the
/// detectors returned, in any order.
pub fn analyse(findings: Vec<Finding>, run: &RunInfo) -> Vec<Finding> {
    let links = link(&findings);
    let order = tree_order(&findings, &links);
    let ids: BTreeMap<usize, String> = order.iter().enumerate().map(|(k, &i)| (i, format!("F{}", k + 1))).collect();
    let mut slots: Vec<Option<Finding>> = findings.into_iter().map(Some).collect();
    let mut out: Vec<Finding> = Vec::with_capacity(order.len());
    for &i in &order {
        let mut f = slots[i].take().expect("each finding is listed once");
        f.id = ids[&i].clone();
        f.caused_by = links[i].map(|c| ids[&c].clone());
        out.push(f);
    }
    reconcile(&mut out, run);
    out
}

/// How deep each finding sits in the cause tree: 0 for a root cause, 1 for a consequence of
/// a root, and so on, by following `caused_by` ids within `findings`. An id that names no
/// finding, or a cycle, ends the walk (a malformed list still gets a depth for every finding).
pub fn depths(findings: &[Finding]) -> Vec<usize> {
    findings
        .iter()
        .map(|f| {
            let mut d = 0;
            let mut at = f.caused_by.as_deref();
            while let Some(id) = at {
                if d >= findings.len() {
                    break;
                }
                d += 1;
                at = findings.iter().find(|g| g.id == id).and_then(|g| g.caused_by.as_deref());
            }
            d
        })
        .collect()
}

/// The sort key of a finding within its level of the tree.
fn key(f: &Finding) -> (Severity, Option<usize>, Code, &str) {
    (f.severity, f.step, f.code, f.where_.as_str())
}

/// Indices in listing order: roots by [`key`], each followed by its consequences, recursively.
fn tree_order(findings: &[Finding], links: &[Option<usize>]) -> Vec<usize> {
    let sorted = |mut v: Vec<usize>| {
        v.sort_by(|&a, &b| key(&findings[a]).cmp(&key(&findings[b])));
        v
    };
    fn visit(i: usize, children: &BTreeMap<usize, Vec<usize>>, out: &mut Vec<usize>) {
        out.push(i);
        for &c in children.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            visit(c, children, out);
        }
    }
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in links.iter().enumerate() {
        if let Some(c) = l {
            children.entry(*c).or_default().push(i);
        }
    }
    for v in children.values_mut() {
        *v = sorted(std::mem::take(v));
    }
    let roots = sorted((0..findings.len()).filter(|&i| links[i].is_none()).collect());
    let mut out = Vec::with_capacity(findings.len());
    for r in roots {
        visit(r, &children, &mut out);
    }
    out
}

/// Whether following causes up from `from` reaches `target`.
fn reaches(links: &[Option<usize>], from: usize, target: usize) -> bool {
    let mut at = Some(from);
    let mut hops = 0;
    while let Some(i) = at {
        if i == target {
            return true;
        }
        at = links[i];
        hops += 1;
        if hops > links.len() {
            return true; // a cycle already: refuse
        }
    }
    false
}

/// Make `cause` the cause of `cons` unless `cons` has one or the link would close a cycle.
fn set_cause(links: &mut [Option<usize>], cons: usize, cause: usize) -> bool {
    if cons == cause || links[cons].is_some() || reaches(links, cause, cons) {
        return false;
    }
    links[cons] = Some(cause);
    true
}

/// The root of `i`'s chain of causes.
fn root_of(links: &[Option<usize>], mut i: usize) -> usize {
    let mut hops = 0;
    while let Some(c) = links[i] {
        i = c;
        hops += 1;
        if hops > links.len() {
            break;
        }
    }
    i
}

fn is_problem(f: &Finding) -> bool {
    f.severity.is_at_least(Severity::Warning)
}

/// The cause of each finding (an index into `findings`), by the rules of the module docs.
pub fn link(findings: &[Finding]) -> Vec<Option<usize>> {
    let n = findings.len();
    let mut links: Vec<Option<usize>> = vec![None; n];
    let of = |code: Code| -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).filter(|&i| findings[i].code == code).collect();
        v.sort_by(|&a, &b| key(&findings[a]).cmp(&key(&findings[b])));
        v
    };
    let step = |i: usize| findings[i].step;
    let diverging = of(Code::DivergingLoss).first().copied();
    let non_finite = of(Code::NonFinite).first().copied();

    // Rule 1: the divergence pair.
    let head = match (diverging, non_finite) {
        (Some(dl), Some(nf)) => {
            let rose = findings[dl].number("exceeded_step");
            let nf_step = step(nf).unwrap_or(usize::MAX) as f64;
            if rose.is_some_and(|r| r < nf_step) {
                set_cause(&mut links, nf, dl);
                Some(dl)
            } else {
                set_cause(&mut links, dl, nf);
                Some(nf)
            }
        }
        (one, other) => one.or(other),
    };
    let d = [diverging, non_finite].into_iter().flatten().filter_map(step).min();

    // Rule 2: an explosion at or before the divergence caused it.
    if let (Some(h), Some(d)) = (head, d) {
        if let Some(&e) = of(Code::ExplodingGradient).iter().find(|&&e| step(e).is_some_and(|s| s <= d)) {
            set_cause(&mut links, h, e);
        }
    }

    // Rule 3: what was measured on a model the divergence had wrecked (not when the loss
    // recovered: then the divergence is a warning and the model was not wrecked for good).
    if let (Some(h), Some(d)) = (head.filter(|&h| findings[h].severity == Severity::Error), d) {
        let after = [
            Code::DeadRelu,
            Code::ZeroGradient,
            Code::VanishingGradient,
            Code::ExplodingGradient,
            Code::Saturation,
            Code::UpdateRatio,
        ];
        for (i, f) in findings.iter().enumerate() {
            if after.contains(&f.code) && f.step.is_some_and(|s| s >= d) {
                set_cause(&mut links, i, h);
            }
        }
    }

    // Rule 3b: a divergence that recovered still leaves dead units behind: ReLUs pushed
    // negative for every example during the spike never fire again.
    if let (Some(h), Some(d)) = (head.filter(|&h| findings[h].severity != Severity::Error), d) {
        for (i, f) in findings.iter().enumerate() {
            if f.code == Code::DeadRelu && f.step.is_some_and(|s| s >= d) {
                set_cause(&mut links, i, h);
            }
        }
    }

    // Rule 4: explosion, then vanishing or saturation in the same layer.
    for e in of(Code::ExplodingGradient) {
        let depth = findings[e].text("axis") == Some("depth");
        for i in 0..n {
            let later = matches!(findings[i].code, Code::VanishingGradient | Code::Saturation)
                && step(i).zip(step(e)).is_some_and(|(si, se)| si > se);
            let same_layer =
                findings[i].layer == findings[e].layer || (depth && findings[i].text("axis") != Some("time"));
            if later && same_layer {
                set_cause(&mut links, i, e);
            }
        }
    }

    // Rule 5: saturation causes vanishing.
    let saturated = of(Code::Saturation);
    for v in of(Code::VanishingGradient) {
        let cause = if findings[v].text("axis") == Some("depth") {
            let lo = findings[v].number("bottom_layer").unwrap_or(f64::INFINITY);
            let hi = findings[v].number("top_layer").unwrap_or(f64::NEG_INFINITY);
            saturated.iter().copied().find(|&s| findings[s].layer.is_some_and(|l| (lo..=hi).contains(&(l as f64))))
        } else {
            saturated.iter().copied().find(|&s| findings[s].layer == findings[v].layer && findings[s].layer.is_some())
        };
        if let Some(s) = cause {
            set_cause(&mut links, v, s);
        }
    }

    // Rule 6: vanishing through depth causes tiny updates below its top layer.
    let too_small =
        |i: usize| findings[i].code == Code::UpdateRatio && findings[i].text("direction") == Some("too_small");
    for v in of(Code::VanishingGradient) {
        if findings[v].text("axis") != Some("depth") {
            continue;
        }
        let top = findings[v].number("top_layer").unwrap_or(f64::NEG_INFINITY);
        for (i, f) in findings.iter().enumerate() {
            if too_small(i) && f.layer.is_some_and(|l| (l as f64) < top) {
                set_cause(&mut links, i, v);
            }
        }
    }

    // Rule 6b: tiny updates because the global clip cut every step to make room for an
    // exploding gradient are that explosion's consequence.
    if let Some(&e) = of(Code::ExplodingGradient).first() {
        for (i, f) in findings.iter().enumerate() {
            if too_small(i) && f.evidence.get("clipped").and_then(Value::as_bool) == Some(true) {
                set_cause(&mut links, i, e);
            }
        }
    }

    // Rule 7: a zero-gradient op (or dead units, for an exactly zero gradient) causes tiny updates.
    let zero = of(Code::ZeroGradient).into_iter().find(|&z| is_problem(&findings[z]));
    let dead = of(Code::DeadRelu).first().copied();
    for (i, f) in findings.iter().enumerate() {
        if !too_small(i) {
            continue;
        }
        if let Some(z) = zero {
            set_cause(&mut links, i, z);
        } else if let (Some(dr), Some(0.0)) = (dead, f.number("grad_norm")) {
            set_cause(&mut links, i, dr);
        }
    }

    // Rule 8: batch norm statistics explain the eval-mode findings above them.
    let bn_problems: Vec<usize> = {
        let mut v: Vec<usize> = of(Code::BatchnormStats).into_iter().filter(|&i| is_problem(&findings[i])).collect();
        v.sort_by_key(|&i| findings[i].layer);
        v
    };
    for (i, f) in findings.iter().enumerate() {
        if !matches!(f.code, Code::BatchnormStats | Code::DeadRelu) {
            continue;
        }
        let below = bn_problems.iter().copied().find(|&b| findings[b].layer.zip(f.layer).is_some_and(|(lb, l)| lb < l));
        if let Some(b) = below {
            set_cause(&mut links, i, b);
        }
    }

    // Rule 9: not learning has a reason.
    let preference = [
        Code::DivergingLoss,
        Code::NonFinite,
        Code::ZeroGradient,
        Code::BatchnormStats,
        Code::DeadRelu,
        Code::Saturation,
        Code::VanishingGradient,
        Code::ExplodingGradient,
        Code::UpdateRatio,
        Code::UnnormalizedInput,
        Code::BadInitLoss,
    ];
    for nl in of(Code::NotLearning) {
        let cause = preference.iter().find_map(|&c| of(c).into_iter().find(|&i| is_problem(&findings[i])));
        if let Some(c) = cause {
            let r = root_of(&links, c);
            set_cause(&mut links, nl, r);
        }
    }
    links
}

/// Two JSON values that mean the same setting (numbers compared as numbers).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Make the advice of `findings` (in listing order, ids and causes set) consistent, by the
/// rules of the module docs.
pub fn reconcile(findings: &mut [Finding], run: &RunInfo) {
    let codes: BTreeMap<String, Code> = findings.iter().map(|f| (f.id.clone(), f.code)).collect();
    one_learning_rate(findings);
    // The factor on the learning rate that brings the largest too-large update ratio measured
    // in this run to UPDATE_RATIO_LOWER_TO (1 when none was measured).
    let largest_ratio = findings
        .iter()
        .filter(|f| f.code == Code::UpdateRatio && f.text("direction") == Some("too_large"))
        .filter_map(|f| f.number("ratio"))
        .filter(|r| r.is_finite())
        .fold(0.0, f64::max);
    let measured_cut = (super::detectors::update_ratio::UPDATE_RATIO_LOWER_TO / largest_ratio).min(1.0);
    // The factor that brings the largest too-small ratio of a root cause (not one explained
    // by a blocked or vanishing gradient) to UPDATE_RATIO_TARGET (1 when none).
    let largest_small = findings
        .iter()
        .filter(|f| f.caused_by.is_none() && f.code == Code::UpdateRatio && f.text("direction") == Some("too_small"))
        .filter_map(|f| f.number("ratio"))
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold(0.0, f64::max);
    // Not under gradient clipping: the clip, not the rate, sets the step size there.
    let measured_raise = if largest_small > 0.0 && !run.clipping() {
        (super::detectors::update_ratio::UPDATE_RATIO_TARGET / largest_small).max(1.0)
    } else {
        1.0
    };
    for f in findings.iter_mut() {
        // A consequence: fix the cause.
        if let Some(cause) = &f.caused_by {
            let code = codes.get(cause).map(|c| c.as_str()).unwrap_or("another finding");
            f.fix = vec![Fix::text(format!("fix the cause first: {code} ({cause}); this follows from it"))];
            continue;
        }
        // A fix whose settings are all in effect says nothing new (a fix with some keys
        // already set keeps them all: it is applied whole); learning rates stay within bounds,
        // and a cut goes at least as deep as the measured update ratios call for.
        f.fix.retain_mut(|x| {
            let had = !x.set.is_empty();
            if x.set.iter().all(|(k, v)| run.settings.get(k).is_some_and(|cur| same_value(cur, v))) {
                x.set.clear();
            }
            if let (Some(lr), Some(v)) = (run.lr(), x.set.get_mut("train.lr")) {
                if let Some(s) = v.as_f64() {
                    let deeper = lr * measured_cut;
                    // Only a cut already at the lr/100 bound goes deeper: within the bounds the
                    // detector's own estimate stands (on examples/sick/relu-dead-lr.toml the
                    // divergence's cut to 0.5 reached 94.7%, the update ratio's to 0.02 76.3%).
                    let at_bound = s <= lr * super::detectors::LR_MIN_FACTOR * (1.0 + 1e-9);
                    let cut = if at_bound && deeper < s { super::detectors::round_sig1(deeper) } else { s };
                    // The same for a raise at the lr*10 bound and a measured too-small ratio.
                    let higher = lr * measured_raise;
                    let at_top = cut >= lr * super::detectors::LR_MAX_FACTOR * (1.0 - 1e-9);
                    let cut = if at_top && higher > cut { super::detectors::round_sig1(higher) } else { cut };
                    // (half and twice: room for the rounding to one significant digit)
                    let min_factor = super::detectors::LR_MIN_FACTOR.min(measured_cut * 0.5);
                    let max_factor = super::detectors::LR_MAX_FACTOR.max(measured_raise * 2.0);
                    let bounded = cut.clamp(lr * min_factor, lr * max_factor);
                    if bounded != s {
                        *v = bounded.into();
                    }
                }
            }
            !(had && x.set.is_empty())
        });
    }
    // One value per setting, first claim wins.
    let mut claimed: BTreeMap<String, (Value, String)> = BTreeMap::new();
    for f in findings.iter_mut() {
        for (rank, x) in f.fix.iter_mut().enumerate() {
            let owner = format!("{} fix {}", f.id, rank + 1);
            // A fix is applied whole or not at all: one conflicting key takes all its settings.
            let notes: Vec<String> = x
                .set
                .iter()
                .filter_map(|(k, v)| match claimed.get(k) {
                    Some((cv, who)) if !same_value(cv, v) => {
                        Some(format!("{k} = {v}, an alternative to {who}'s {k} = {cv}"))
                    }
                    _ => None,
                })
                .collect();
            if notes.is_empty() {
                for (k, v) in &x.set {
                    claimed.entry(k.clone()).or_insert_with(|| (v.clone(), owner.clone()));
                }
            } else {
                let all = x.settings_line();
                x.set.clear();
                x.text = format!("{} (not set: {all}; {})", x.text, notes.join("; "));
            }
        }
    }
}

/// The root of `id`'s cause chain (itself when it has no cause; stops on a cycle).
fn root_id<'a>(findings: &'a [Finding], id: &'a str) -> &'a str {
    let mut cur = id;
    for _ in 0..findings.len() {
        match findings.iter().find(|f| f.id == cur).and_then(|f| f.caused_by.as_deref()) {
            Some(next) => cur = next,
            None => break,
        }
    }
    cur
}

/// A too-large update ratio next to too-small ones: the learning rate is shared, so cutting
/// it for the fast layer slows the slow ones further. The fast finding's advice starts with
/// what makes the others slow.
fn one_learning_rate(findings: &mut [Finding]) {
    let direction = |f: &Finding, d: &str| f.code == Code::UpdateRatio && f.text("direction") == Some(d);
    let slow: Vec<(String, Option<usize>)> =
        findings.iter().filter(|f| direction(f, "too_small")).map(|f| (f.id.clone(), f.layer)).collect();
    if slow.is_empty() {
        return;
    }
    let ids: Vec<&str> = slow.iter().map(|(id, _)| id.as_str()).collect();
    let mut layers: Vec<String> = slow.iter().filter_map(|(_, l)| l.map(|l| l.to_string())).collect();
    layers.dedup();
    let which = if layers.is_empty() { "other weights".to_string() } else { format!("layer(s) {}", layers.join(", ")) };
    let root = root_id(findings, ids[0]).to_string();
    let root_code = findings.iter().find(|f| f.id == root).map(|f| f.code);
    let first = match root_code {
        Some(code) if !ids.contains(&root.as_str()) => Fix::text(format!(
            "fix {code} ({root}) first: {which} step too little ({}), and one learning rate serves every layer, so a \
             lower one slows them further",
            ids.join(", ")
        )),
        _ => Fix::text(format!(
            "balance the layers before cutting the learning rate: {which} step too little ({}), and one learning rate \
             serves every layer, so a lower one slows them further (normalise the layers: batch norm, or Adam's \
             per-weight steps)",
            ids.join(", ")
        )),
    };
    for f in findings.iter_mut() {
        if f.caused_by.is_none() && direction(f, "too_large") {
            // The settings now depend on the first fix's outcome: they stay in the text, not
            // in `set`, so that `--treat` (which applies settings) does not cut the rate of
            // a run whose slow layers it is treating at the same time.
            for x in f.fix.iter_mut().filter(|x| !x.set.is_empty()) {
                x.text = format!("then, if this layer still steps too far: {} ({})", x.text, x.settings_line());
                x.set.clear();
            }
            f.fix.insert(0, first.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each rule, end to end through `diagnose` on hand-made recorded statistics.
    use super::*;
    use crate::doctor::detectors::testutil::{bptt, grad_layer, layer};
    use crate::doctor::diagnose;
    use crate::doctor::stats::*;

    #[test]
    fn depths_follow_caused_by_and_survive_bad_links() {
        let f = |id: &str, cause: Option<&str>| {
            let mut f = Finding::new(Code::DeadRelu, Severity::Warning, "layer 1 (relu)", None, "");
            f.id = id.into();
            f.caused_by = cause.map(str::to_string);
            f
        };
        let list = [
            f("F1", None),
            f("F2", Some("F1")),
            f("F3", Some("F2")),
            f("F4", None),
            f("F5", Some("F9")),
            f("F6", Some("F7")),
            f("F7", Some("F6")),
        ];
        let d = depths(&list);
        assert_eq!(&d[..5], &[0, 1, 2, 0, 1]);
        // A cycle ends after at most one lap; both members still get a finite depth.
        assert!(d[5] <= list.len() && d[6] <= list.len(), "{d:?}");
    }

    fn run(lr: f64, classes: usize) -> RunInfo {
        let mut r = RunInfo { classes, loss: Some("softmax".into()), ..Default::default() };
        r.settings.insert("train.lr".into(), lr.into());
        r.settings.insert("train.optimizer".into(), "sgd".into());
        r
    }

    fn param(layer: usize, step: usize, ratio: f64, grad_norm: f64) -> ParamStats {
        ParamStats {
            layer,
            layer_kind: "affine".into(),
            name: "W".into(),
            step,
            is_weight: true,
            weight_norm: 1.0,
            grad_norm,
            lr: 0.5,
            update_norm: Some(ratio),
        }
    }

    fn find(f: &[Finding], code: Code) -> &Finding {
        f.iter().find(|x| x.code == code).unwrap_or_else(|| panic!("no {code} in {f:#?}"))
    }

    fn cause_of<'a>(f: &'a [Finding], x: &Finding) -> Option<&'a Finding> {
        x.caused_by.as_ref().map(|c| f.iter().find(|y| &y.id == c).expect("the cause is listed"))
    }

    /// Each consequence is listed after its cause and ids follow the listing.
    fn check_order(f: &[Finding]) {
        for (k, x) in f.iter().enumerate() {
            assert_eq!(x.id, format!("F{}", k + 1));
            if let Some(c) = cause_of(f, x) {
                let ci = f.iter().position(|y| y.id == c.id).unwrap();
                assert!(ci < k, "{} listed before its cause {}", x.id, c.id);
            }
        }
    }

    /// The sigmoid-deep case: sigmoid layers saturated in the middle, the gradient vanishing
    /// through depth, the lower layers' updates tiny and the top layer's large. Saturation is
    /// the root, vanishing its consequence, the tiny updates the vanishing's; no fix raises
    /// the learning rate, and the one learning rate suggested is within bounds.
    #[test]
    fn rules_5_and_6_sigmoid_deep() {
        let mut s = RecordedStats { run: run(0.5, 10), ..Default::default() };
        for step in [0, 10, 20] {
            s.layers.push(grad_layer(0, "affine", step, 1e-5));
            let mut sig = grad_layer(1, "sigmoid", step, 1e-4);
            sig.saturated_fraction = Some(0.95);
            sig.mean_local_grad = Some(0.01);
            s.layers.push(sig);
            s.layers.push(grad_layer(8, "affine", step, 1.0));
            s.params.push(param(0, step, 1e-7, 1e-4)); // too small
            s.params.push(param(8, step, 0.1, 1.0)); // too large
        }
        let f = diagnose(&s);
        check_order(&f);
        let sat = find(&f, Code::Saturation);
        let van = find(&f, Code::VanishingGradient);
        assert!(sat.is_root());
        assert_eq!(van.caused_by.as_deref(), Some(sat.id.as_str()));
        let slow = f.iter().find(|x| x.code == Code::UpdateRatio && x.layer == Some(0)).unwrap();
        assert_eq!(slow.caused_by.as_deref(), Some(van.id.as_str()));
        assert!(slow.fix[0].text.contains(&van.id));
        assert!(f.iter().all(|x| x.fix.iter().all(|y| y
            .set
            .get("train.lr")
            .and_then(Value::as_f64)
            .is_none_or(|v| v <= 0.5))));
        // The top layer steps too far while layer 0 steps too little: one learning rate for
        // both, so its advice starts with the root of the slow layer (saturation, behind the
        // vanishing gradient), and the
        // learning-rate cut comes after it.
        let fast = f.iter().find(|x| x.code == Code::UpdateRatio && x.layer == Some(8)).unwrap();
        assert!(fast.is_root());
        assert!(fast.fix[0].set.is_empty() && fast.fix[0].text.contains(&format!("({})", sat.id)), "{:?}", fast.fix);
        assert!(fast.fix[0].text.contains(&slow.id), "{:?}", fast.fix);
        // The cut follows as text only (no settings: --treat does not apply it with the
        // first fix), its value still within bounds.
        let lr: f64 = fast.fix[1].text.split("train.lr = ").nth(1).unwrap().trim_end_matches(')').parse().unwrap();
        assert!((0.005..=5.0).contains(&lr), "{lr}");
        assert!(fast.fix[1].text.starts_with("then, if this layer still steps too far: lower"), "{:?}", fast.fix);
        assert!(fast.fix.iter().all(|x| x.set.is_empty()), "{:?}", fast.fix);
        assert!(!crate::doctor::treatment::plan(&f).contains_key("train.lr"));
    }

    /// Learning-rate bounds: [lr/100, lr*10] unless the update ratio was measured far
    /// outside them. lr 0.5 throughout.
    #[test]
    fn lr_bounds_widen_only_as_far_as_measured_ratios_call_for() {
        let lr_of = |ratio: f64| {
            let mut s = RecordedStats { run: run(0.5, 10), ..Default::default() };
            for step in [0, 10, 20] {
                s.params.push(param(0, step, ratio, 1.0));
            }
            let f = diagnose(&s);
            let u = find(&f, Code::UpdateRatio);
            u.fix[0].set["train.lr"].as_f64().unwrap()
        };
        // Steps 5,000 times the weight: lr/100 = 0.005 is not enough; the cut brings the
        // ratio to 1e-2: 0.5 * 1e-2 / 5000 = 1e-6.
        assert_eq!(lr_of(5000.0), 1e-6);
        // A ratio of 0.1 needs a cut of 10: within the bounds, the detector's own value.
        assert_eq!(lr_of(0.1), 0.05);
        // Steps a millionth of the weight (a root cause: nothing blocks the gradient): lr*10
        // is not enough; the raise brings the ratio to 1e-3: 0.5 * 1e-3 / 1e-6 = 500.
        assert_eq!(lr_of(1e-6), 500.0);
        // 1e-5.5 needs a raise of ~316: beyond lr*10 as well.
        assert_eq!(lr_of(10f64.powf(-5.5)), 200.0);
    }

    /// The exploding RNN: the gradient explodes through time at step 0, the loss diverges,
    /// and later samples read h_0's gradient as 0 ("vanishing"). Exploding is the root; the
    /// divergence its consequence; the vanishing reading the divergence's.
    #[test]
    fn rules_2_and_3_exploding_rnn() {
        let mut s = RecordedStats { run: run(0.1, 0), ..Default::default() };
        s.bptt.push(bptt(0, 50, 1.4, 3.0)); // 1.4^49 ~ 1.4e7: explodes
        for step in [10, 20, 30] {
            let mut b = bptt(step, 50, 1.0, 3.0);
            b.norms_per_t[0] = 0.0;
            s.bptt.push(b);
        }
        s.losses = (0..40).map(|t| if t < 5 { 0.1 } else { 0.1 * 100f64.powi(t - 4).min(1e30) }).collect();
        let f = diagnose(&s);
        check_order(&f);
        assert_eq!(f[0].code, Code::ExplodingGradient, "{f:#?}");
        assert!(f[0].is_root());
        let div = find(&f, Code::DivergingLoss);
        assert_eq!(div.caused_by.as_deref(), Some(f[0].id.as_str()));
        let van = find(&f, Code::VanishingGradient);
        assert!(van.caused_by.is_some(), "{van:#?}");
        assert_eq!(f.iter().filter(|x| x.is_root() && x.severity.is_at_least(Severity::Warning)).count(), 1);
    }

    /// Rule 6b: the exploding RNN under clipping (clip 1.0). The clip cut every sampled step,
    /// so the output layer's tiny updates follow from the explosion; nothing raises the
    /// learning rate (a raise would scale the exploding part too), and `--treat` does not.
    #[test]
    fn rule_6b_clipped_explosion_starves_the_other_weights() {
        let mut s = RecordedStats { run: run(0.1, 0), ..Default::default() };
        s.run.settings.insert("train.clip_grad_norm".into(), 1.0.into());
        for step in [0, 10, 20] {
            s.bptt.push(bptt(step, 50, 1.4, 3.0));
            s.global_norms.push(GlobalNormSample { step, before: 4e6, after: 1.0 });
            s.params.push(param(1, step, 2e-6, 1.0));
        }
        s.losses = vec![1.0; 30];
        let f = diagnose(&s);
        check_order(&f);
        let e = find(&f, Code::ExplodingGradient);
        let u = find(&f, Code::UpdateRatio);
        assert_eq!(u.caused_by.as_deref(), Some(e.id.as_str()), "{f:#?}");
        assert!(f.iter().all(|x| x.fix.iter().all(|y| !y.set.contains_key("train.lr"))), "{f:#?}");
        assert!(!crate::doctor::treatment::plan(&f).contains_key("train.lr"));
    }

    /// A run whose loss went from 2.3 to 1.6e30 (MSE, raw digits, SGD lr 10): the divergence
    /// is named first; dead units and tiny updates measured after it are its consequences.
    #[test]
    fn rules_1_and_3_diverging_mse() {
        let mut s = RecordedStats { run: run(10.0, 10), ..Default::default() };
        s.losses = (0..60).map(|t| if t < 3 { 2.3 } else { (2.3 * 10f64.powi(t - 2)).min(1.6e30) }).collect();
        s.losses.push(f64::NAN);
        s.record_non_finite(NonFinite {
            step: 60,
            pass: Pass::Forward,
            layer_index: Some(0),
            layer_kind: "affine".into(),
            op: "affine 64->100".into(),
            nan_count: 10,
            inf_count: 0,
        });
        let mut pass = DeadUnitPass::new(1, "relu", 60, 10);
        pass.examples = 100;
        s.dead_units.push(pass);
        for step in [10, 20, 30] {
            s.params.push(param(0, step, 1e-9, 1e-9));
            s.layers.push(grad_layer(0, "affine", step, 1e-9));
            s.layers.push(grad_layer(2, "affine", step, 1.0));
        }
        let f = diagnose(&s);
        check_order(&f);
        assert_eq!(f[0].code, Code::DivergingLoss, "{f:#?}");
        for code in [Code::NonFinite, Code::DeadRelu, Code::UpdateRatio, Code::VanishingGradient] {
            let x = find(&f, code);
            assert_eq!(cause_of(&f, x).map(|c| c.code), Some(Code::DivergingLoss), "{code}");
        }
        // Its advice: lower the learning rate, within bounds.
        assert_eq!(f[0].fix[0].set["train.lr"], 1.0);
    }

    /// Rule 3b: the ReLU demo's lr 2 run. The loss spiked (2.99 -> 95) and came back, so the
    /// divergence is a warning; the units it killed are still its consequence, and the run's
    /// advice is to lower the learning rate, not to nudge the biases.
    #[test]
    fn rule_3b_a_recovered_spike_explains_the_dead_units() {
        let mut s = RecordedStats { run: run(2.0, 10), ..Default::default() };
        s.losses = (0..60).map(|t| if (8..20).contains(&t) { 95.0 } else { 2.3 - 0.01 * t as f64 }).collect();
        let mut pass = DeadUnitPass::new(3, "relu", 50, 10);
        pass.examples = 100;
        s.dead_units.push(pass);
        let f = diagnose(&s);
        check_order(&f);
        let div = find(&f, Code::DivergingLoss);
        assert_eq!(div.severity, Severity::Warning, "{div:#?}");
        assert!(div.is_root());
        let dead = find(&f, Code::DeadRelu);
        assert_eq!(dead.caused_by.as_deref(), Some(div.id.as_str()), "{f:#?}");
        assert!(crate::doctor::treatment::plan(&f).contains_key("train.lr"));
        // Units found dead before the spike are not its doing.
        let mut early = s.clone();
        early.dead_units[0].step = 2;
        let f = diagnose(&early);
        assert!(find(&f, Code::DeadRelu).is_root(), "{f:#?}");
    }

    /// Rule 1, the other way: a loss that jumped straight to NaN is explained by the op.
    #[test]
    fn rule_1_nan_first() {
        let mut s = RecordedStats { run: run(0.1, 10), ..Default::default() };
        s.losses = vec![2.3, 2.2, f64::NAN];
        s.record_non_finite(NonFinite {
            step: 2,
            pass: Pass::Forward,
            layer_index: Some(0),
            layer_kind: "affine".into(),
            op: "affine".into(),
            nan_count: 1,
            inf_count: 0,
        });
        let f = diagnose(&s);
        check_order(&f);
        assert_eq!(f[0].code, Code::NonFinite);
        assert_eq!(find(&f, Code::DivergingLoss).caused_by.as_deref(), Some("F1"));
    }

    /// Rule 4 and rule 3 for saturation: a tanh layer saturates after the gradient exploded.
    /// An exploding gradient is told to lower the learning rate only when the steps are
    /// large: with every weight's update ratio at or below 1e-3 (deep-relu-exploding.toml: lr
    /// 1e-6, ratios 2e-4 to 5e-4) the cut would only slow the weights further.
    #[test]
    fn an_explosion_with_small_steps_keeps_the_learning_rate() {
        let lowers = |ratio: f64| {
            let mut s = RecordedStats { run: run(0.5, 0), ..Default::default() };
            for step in [0, 10, 20] {
                // The gradient grows 1e4-fold from layer 8 down to layer 0.
                s.layers.push(grad_layer(0, "affine", step, 1e4));
                s.layers.push(grad_layer(8, "affine", step, 1.0));
                s.params.push(param(0, step, ratio, 1.0));
            }
            let f = diagnose(&s);
            let e = find(&f, Code::ExplodingGradient);
            e.fix.iter().any(|x| x.text.starts_with("lower the learning rate"))
        };
        assert!(!lowers(5e-4));
        assert!(lowers(5e-3));
    }

    #[test]
    fn rule_4_saturation_after_explosion() {
        let mut s = RecordedStats::default();
        s.bptt.push(bptt(0, 20, 2.5, 3.0)); // explodes at step 0 (2.5^19)
        s.gates = [10, 20]
            .iter()
            .map(|&step| GateStats {
                layer: 1,
                cell: "rnn".into(),
                gate: "h".into(),
                activation: "tanh".into(),
                step,
                count: 100,
                saturated_fraction: 0.97,
                mean_local_grad: 0.01,
            })
            .collect();
        let f = diagnose(&s);
        check_order(&f);
        let sat = find(&f, Code::Saturation);
        assert_eq!(cause_of(&f, sat).map(|c| c.code), Some(Code::ExplodingGradient));
    }

    /// Rule 7: a clip that zeroes most of the gradient explains the tiny updates, and the
    /// tiny updates do not ask for a larger learning rate.
    #[test]
    fn rule_7_zero_gradient_op() {
        let mut s = RecordedStats { run: run(0.01, 10), ..Default::default() };
        for step in [0, 10, 20] {
            s.flat_ops.push(FlatOpStats {
                op: FlatOp::Clip,
                where_: "loss (clipped_mse)".into(),
                rl: false,
                step,
                zeroed: 90,
                total: 100,
                loss: 0.9,
            });
            s.params.push(param(0, step, 1e-7, 1e-5));
        }
        let f = diagnose(&s);
        check_order(&f);
        let z = find(&f, Code::ZeroGradient);
        assert!(z.is_root());
        let u = find(&f, Code::UpdateRatio);
        assert_eq!(u.caused_by.as_deref(), Some(z.id.as_str()));
        assert!(u.fix.iter().all(|x| x.set.is_empty()), "{:?}", u.fix);
        // Dead units explain an exactly zero gradient when no clip does.
        let mut s = RecordedStats::default();
        let mut pass = DeadUnitPass::new(1, "relu", 30, 10);
        pass.examples = 100;
        s.dead_units.push(pass);
        s.params.push(param(0, 0, 0.0, 0.0));
        let f = diagnose(&s);
        assert_eq!(cause_of(&f, find(&f, Code::UpdateRatio)).map(|c| c.code), Some(Code::DeadRelu));
    }

    /// Rule 8: not learning hangs under the root of the first problem in the list.
    #[test]
    fn rule_8_not_learning() {
        let mut s = RecordedStats { run: run(0.5, 10), ..Default::default() };
        s.epochs = (1..=3)
            .map(|epoch| EpochStats { epoch, train_loss: 2.3, train_acc: 0.1, val_loss: 2.3, val_acc: 0.1 })
            .collect();
        for step in [0, 10] {
            let mut sig = layer(1, "sigmoid", step);
            sig.saturated_fraction = Some(0.97);
            s.layers.push(sig);
        }
        let f = diagnose(&s);
        check_order(&f);
        let nl = find(&f, Code::NotLearning);
        assert_eq!(cause_of(&f, nl).map(|c| c.code), Some(Code::Saturation));
        // Alone, it is a root with its own advice (raise the rate tenfold, the bound).
        s.layers.clear();
        let f = diagnose(&s);
        assert!(f[0].is_root());
        assert_eq!(f[0].fix[0].set["train.lr"], 5.0);
    }

    /// Batch norm statistics that do not fit the data explain the dead units and the batch
    /// norm mismatches above them (eval mode), not those below.
    #[test]
    fn rule_8_batchnorm_statistics() {
        let bn = |layer: usize, shift: f64| BatchNormStats {
            layer,
            kind: "batchnorm".into(),
            examples: 500,
            values_per_feature: 500,
            data_mean: vec![0.0; 10],
            data_var: vec![1.0; 10],
            running_mean: vec![shift; 10],
            running_var: vec![1.0; 10],
            eps: 1e-5,
            batches_tracked: None,
        };
        let dead = |layer: usize| {
            let mut p = DeadUnitPass::new(layer, "relu", 0, 10);
            p.examples = 500;
            p.fire_counts = (0..10).map(|u| if u < 6 { 0 } else { 9 }).collect();
            p
        };
        let mut s = RecordedStats { run: run(0.1, 10), ..Default::default() };
        s.batchnorm = vec![bn(1, 3.0), bn(4, 0.8)];
        s.dead_units = vec![dead(0), dead(2)];
        let f = diagnose(&s);
        check_order(&f);
        let low = f.iter().find(|x| x.layer == Some(1)).unwrap();
        assert_eq!((low.code, low.severity), (Code::BatchnormStats, Severity::Error));
        assert!(low.is_root());
        for layer in [2, 4] {
            let x = f.iter().find(|x| x.layer == Some(layer)).unwrap();
            assert_eq!(cause_of(&f, x).map(|c| c.id.as_str()), Some(low.id.as_str()), "{x:?}");
            assert!(x.fix[0].text.contains("fix the cause first"));
        }
        assert!(f.iter().find(|x| x.layer == Some(0)).unwrap().is_root(), "a layer below is not explained");
    }

    /// One value per setting: the first claim wins, a later different value is dropped and
    /// said; settings already in effect are not suggested.
    #[test]
    fn reconcile_one_value_per_key() {
        let mut a = Finding::new(Code::DeadRelu, Severity::Error, "layer 1 (relu)", Some(5), "w").fixes([
            Fix::text("lower the learning rate").set("train.lr", 0.05),
            Fix::text("use He init").set("model.init", "he"),
        ]);
        a.id = "F1".into();
        let mut b = Finding::new(Code::UpdateRatio, Severity::Warning, "layer 0 (affine) W", Some(9), "w").fixes([
            Fix::text("lower the learning rate").set("train.lr", 0.01),
            Fix::text("use Xavier init").set("model.init", "xavier"),
            Fix::text("use sgd").set("train.optimizer", "sgd"),
        ]);
        b.id = "F2".into();
        let mut f = vec![a, b];
        reconcile(&mut f, &run(0.5, 10));
        assert_eq!(f[0].fix[0].set["train.lr"], 0.05);
        assert!(f[1].fix[0].set.is_empty());
        assert_eq!(
            f[1].fix[0].text,
            "lower the learning rate (not set: train.lr = 0.01; train.lr = 0.01, an alternative to F1 fix 1's train.lr = 0.05)"
        );
        assert!(f[1].fix[1].set.is_empty());
        assert_eq!(f[1].fix.len(), 2, "sgd is already in effect: that fix is gone");
        // A fix with one conflicting key loses all its settings.
        let mut c = Finding::new(Code::BadInitLoss, Severity::Warning, "loss", Some(0), "w").fixes([Fix::text(
            "use a smaller initial scale",
        )
        .set("model.init", "normal")
        .set("model.init_std", 0.01)]);
        c.id = "F3".into();
        f.push(c);
        reconcile(&mut f, &run(0.5, 10));
        assert!(f[2].fix[0].set.is_empty(), "{:?}", f[2].fix);
        // Across the run, no key has two values.
        let mut seen: BTreeMap<&str, &Value> = BTreeMap::new();
        for x in f.iter().flat_map(|x| &x.fix) {
            for (k, v) in &x.set {
                assert!(seen.insert(k, v).is_none_or(|old| old == v));
            }
        }
    }
}
