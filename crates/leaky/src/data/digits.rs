//! The bundled UCI handwritten digits (see `DIGITS_LICENSE.md` next to this file).

use super::csv::parse_csv;
use super::Dataset;
use std::io::Read;
use std::path::Path;

/// scikit-learn's `digits.csv.gz`, byte for byte (SHA-256 in `DIGITS_LICENSE.md`), so the
/// copy can be checked against any scikit-learn wheel.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("digits.csv.gz");

/// The UCI "Optical Recognition of Handwritten Digits" test set as bundled with
/// scikit-learn: 1797 grey-scale 8x8 images of the digits 0-9 written by 13 people.
///
/// `x`: (1797, 64), row-major 8x8 images with the raw integer values 0..=16 as f32 (each is
/// the count of set pixels in a 4x4 block of a 32x32 bitmap); `y`: the digit, 10 classes;
/// `feature_shape = [8, 8]`; name `"digits"`. Roughly balanced: 174 to 183 examples per
/// class. The values are not scaled, so training on them raw shows the unnormalised-input
/// pathology; use [`super::Standardizer`] for the healthy case.
pub fn digits() -> Dataset {
    let mut csv = Vec::with_capacity(270_000);
    // The bytes are compiled in and checked by the tests below (gzip's CRC-32 included),
    // so a failure here is a build defect, not bad input.
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ).read_to_end(&mut csv).expect("bundled digits.csv.gz is valid gzip");
    let mut ds = parse_csv(&csv, Path::new("digits.csv.gz (bundled)")).expect("bundled digits.csv.gz parses");
    ds.name = "digits".into();
    ds.feature_shape = vec![8, 8];
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_shape_and_class_counts() {
        let ds = digits();
        ds.validate().unwrap();
        assert_eq!(ds.name, "digits");
        assert_eq!(ds.len(), 1797);
        assert_eq!(ds.dim(), 64);
        assert_eq!(ds.feature_shape, vec![8, 8]);
        assert_eq!(ds.classes, 10);
        let mut counts = [0usize; 10];
        for &c in &ds.y {
            counts[c] += 1;
        }
        // Counted from the CSV with Python's csv + collections.Counter.
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert!(ds.x.iter().all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
        assert_eq!(ds.x.iter().fold(0.0f32, |m, &v| m.max(v)), 16.0);
    }

    #[test]
    fn digits_first_image_matches_csv_first_row() {
        let ds = digits();
        // The CSV's first row: a zero.
        #[rustfmt::skip]
        let first: [f32; 64] = [
            0., 0., 5., 13., 9., 1., 0., 0.,
            0., 0., 13., 15., 10., 15., 5., 0.,
            0., 3., 15., 2., 0., 11., 8., 0.,
            0., 4., 12., 0., 0., 8., 8., 0.,
            0., 5., 8., 0., 0., 9., 8., 0.,
            0., 4., 11., 0., 1., 12., 7., 0.,
            0., 2., 14., 5., 10., 12., 0., 0.,
            0., 0., 6., 13., 10., 0., 0., 0.,
        ];
        assert_eq!(ds.x.row(0).to_vec(), first.to_vec());
        assert_eq!(ds.y[0], 0);
        assert_eq!(ds.y[1..10], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn bundled_file_is_the_documented_one() {
        // The gzip trailer holds the CRC-32 and length of the decompressed CSV; together
        // with the compressed length they pin the file recorded in DIGITS_LICENSE.md.
        let n = DIGITS_CSV_GZ.len();
        assert_eq!(n, 57_523);
        let crc = u32::from_le_bytes(DIGITS_CSV_GZ[n - 8..n - 4].try_into().unwrap());
        let len = u32::from_le_bytes(DIGITS_CSV_GZ[n - 4..].try_into().unwrap());
        assert_eq!((crc, len), (0x2ebe_3bb7, 264_712));
    }
}
