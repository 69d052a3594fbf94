//! Every size limit `leaky` enforces on input, in one place, and the resource checks that
//! use them.
//!
//! The limits exist so that a malformed or hostile input (a gzip bomb, `/dev/zero` as a
//! data file, a header that claims a terabyte, `hidden = [100000, 100000]`) is refused with
//! an error naming the file or key and the number that was too large, before anything is
//! allocated, instead of aborting on allocation or running for hours. Each is far above what
//! the bundled experiments and the usual teaching data sets (MNIST, Fashion-MNIST, CIFAR-10
//! as `.npy`) need. `docs/reliability.md` lists them for users.

use crate::rl::dqn::DqnConfig;

/// Largest data file read from disk, in bytes (1 GiB). Checked from the file's metadata
/// before reading and again while reading (a file that grows is cut off, not read on).
pub const MAX_DATA_FILE_BYTES: u64 = 1 << 30;

/// Largest decompressed size of a gzip-compressed data file, or of one array in an `.npz`
/// archive, in bytes (1 GiB). Inflation stops at this many bytes; for IDX and `.npy`
/// contents the header is inflated and checked first, so a file whose header is wrong or
/// claims more than this is refused after a few bytes.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Most values (examples x features) a classification data set may hold: 2^28, i.e. 1 GiB
/// as f32. Checked from the file's header before the values are converted.
pub const MAX_DATASET_VALUES: usize = 1 << 28;

/// Most distinct characters a text corpus (`text:PATH`) may have. The vocabulary sizes the
/// embedding, the output layer and the one-hot targets: 10 000 covers alphabetic scripts and
/// the common CJK characters, while a file with a million distinct characters (random
/// bytes decoded as text, a binary file) would need tens of gigabytes.
pub const MAX_TEXT_VOCAB: usize = 10_000;

/// Most characters a text corpus may have (2^26, about 67 million): every character is
/// held as a 4-byte `char` and an 8-byte token id.
pub const MAX_TEXT_CHARS: usize = 1 << 26;

/// Most epochs (`train.epochs`) or DQN episodes (`rl.episodes`) a run may ask for: 10^6.
/// A value beyond this is a typo (`1e18` would run until the machine is switched off), not a
/// budget; a real run of that length is resumed in parts (`leaky train --resume`).
pub const MAX_EPOCHS: usize = 1_000_000;

/// Most hidden layers `model.hidden` may list (as `[[model.layers]]`, at most 1000).
pub const MAX_HIDDEN_LAYERS: usize = 1000;

/// Most parameters (weights and biases) a network may have: 10^8, 400 MB of f32 weights,
/// before gradients and optimiser state.
pub const MAX_PARAMS: usize = 100_000_000;

/// Most bytes of activations one DQN update may need (1 GiB): batch size times the widest
/// layer, for the online and target networks' forward and backward passes.
pub const MAX_BATCH_ACTIVATION_BYTES: u64 = 1 << 30;

/// Most bytes the DQN replay buffer may hold (1 GiB).
pub const MAX_REPLAY_BYTES: u64 = 1 << 30;

/// A configuration that would need more memory than a limit allows. `key` is the
/// experiment-file key to change (e.g. `model.hidden[1]`, `train.batch_size`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value}: {detail}")]
pub struct ResourceError {
    /// The experiment-file key that is too large.
    pub key: String,
    /// Its value.
    pub value: u128,
    /// What it would need and which limit that breaks.
    pub detail: String,
}

/// Parameters of a fully connected network `input -> hidden[0] -> ... -> output`
/// (weights and biases), checked against [`MAX_PARAMS`]. The error names `model.hidden[i]`
/// for the first hidden layer that takes the count over the limit, or the output layer.
pub fn check_mlp_params(input_dim: usize, hidden: &[usize], output_dim: usize) -> Result<usize, ResourceError> {
    let mut total: u128 = 0;
    let mut d = input_dim as u128;
    for (i, &h) in hidden.iter().chain(std::iter::once(&output_dim)).enumerate() {
        let h128 = h as u128;
        total += d * h128 + h128;
        if total > MAX_PARAMS as u128 {
            let (key, value) =
                if i < hidden.len() { (format!("model.hidden[{i}]"), h128) } else { ("output".to_string(), h128) };
            return Err(ResourceError {
                key,
                value,
                detail: format!(
                    "the network would have at least {total} parameters, more than the limit of {MAX_PARAMS} (MAX_PARAMS)"
                ),
            });
        }
        d = h128;
    }
    Ok(total as usize)
}

/// Check a DQN configuration before anything is allocated: the Q-network's parameters
/// ([`MAX_PARAMS`], naming `model.hidden[i]`), one update's activations
/// ([`MAX_BATCH_ACTIVATION_BYTES`], naming `train.batch_size`) and the replay buffer
/// ([`MAX_REPLAY_BYTES`], naming `rl.buffer_size`). Sizes of zero are left to the
/// configuration's own validation. Returns the parameter count.
pub fn check_dqn_resources(cfg: &DqnConfig) -> Result<usize, ResourceError> {
    let params = check_mlp_params(cfg.net.input_dim, &cfg.net.hidden, cfg.net.output_dim)?;
    // Per example and layer: the output, its cache and its gradient (f64 at most), for the
    // online and the target network.
    let widest = cfg.net.hidden.iter().copied().chain([cfg.net.input_dim, cfg.net.output_dim]).max().unwrap_or(1);
    let layers = cfg.net.hidden.len() as u128 + 1;
    let per_example = widest as u128 * layers * 3 * 8 * 2;
    let act = cfg.batch_size as u128 * per_example;
    if act > MAX_BATCH_ACTIVATION_BYTES as u128 {
        return Err(ResourceError {
            key: "train.batch_size".into(),
            value: cfg.batch_size as u128,
            detail: format!(
                "one update would need about {act} bytes of activations ({layers} layers up to {widest} wide), more than the limit of {MAX_BATCH_ACTIVATION_BYTES} (MAX_BATCH_ACTIVATION_BYTES)"
            ),
        });
    }
    let per_transition = std::mem::size_of::<crate::rl::replay::Experience>() as u128;
    let replay = cfg.buffer_size as u128 * per_transition;
    if replay > MAX_REPLAY_BYTES as u128 {
        return Err(ResourceError {
            key: "rl.buffer_size".into(),
            value: cfg.buffer_size as u128,
            detail: format!(
                "the replay buffer would need {replay} bytes ({per_transition} per transition), more than the limit of {MAX_REPLAY_BYTES} (MAX_REPLAY_BYTES)"
            ),
        });
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::dqn::TdLoss;

    #[test]
    fn mlp_params_counted_and_capped() {
        // 4*3+3 + 3*2+2 = 23
        assert_eq!(check_mlp_params(4, &[3], 2), Ok(23));
        let e = check_mlp_params(4, &[100_000, 100_000], 2).unwrap_err();
        assert_eq!((e.key.as_str(), e.value), ("model.hidden[1]", 100_000));
        assert!(e.to_string().contains("more than the limit of 100000000"), "{e}");
        let e = check_mlp_params(usize::MAX, &[], usize::MAX).unwrap_err();
        assert_eq!(e.key, "output");
    }

    #[test]
    fn dqn_absurd_sizes_are_refused_before_allocating() {
        let ok = DqnConfig::new(TdLoss::Huber, 1, 0);
        assert!(check_dqn_resources(&ok).unwrap() > 0);

        let mut wide = ok.clone();
        wide.net.hidden = vec![100_000, 100_000];
        let e = check_dqn_resources(&wide).unwrap_err();
        assert_eq!(e.key, "model.hidden[1]");
        assert!(e.to_string().starts_with("model.hidden[1] = 100000: "), "{e}");

        let mut batch = ok.clone();
        batch.batch_size = usize::MAX - 1;
        let e = check_dqn_resources(&batch).unwrap_err();
        assert_eq!((e.key.as_str(), e.value), ("train.batch_size", (usize::MAX - 1) as u128));
        assert!(e.to_string().contains("MAX_BATCH_ACTIVATION_BYTES"), "{e}");

        let mut replay = ok.clone();
        replay.buffer_size = 1 << 40;
        let e = check_dqn_resources(&replay).unwrap_err();
        assert_eq!(e.key, "rl.buffer_size");
    }
}
