//! The IDX format of MNIST (and Fashion-MNIST, KMNIST, EMNIST): a 4-byte magic
//! `0x00 0x00 TYPE NDIMS`, NDIMS big-endian u32 sizes, then the elements in C order.

use super::{classes_of, format_err, gunzip_if_gzip, read_file, shape_str, DataError, Dataset, Head};
use crate::limits::MAX_DATASET_VALUES;
use ndarray::Array2;
use std::path::Path;

/// IDX type code of unsigned bytes, the only one MNIST-style files use.
const UBYTE: u8 = 0x08;

/// Load an IDX image file and its IDX label file, e.g. MNIST's
/// `train-images-idx3-ubyte.gz` and `train-labels-idx1-ubyte.gz`. Gzipped files are
/// recognised by their content and decompressed.
///
/// - Images: magic `0x00000803` (unsigned bytes, 3 dimensions N, rows, cols); any
///   unsigned-byte IDX file of 2 or more dimensions (N, ...) is accepted the same way.
/// - Labels: magic `0x00000801` (unsigned bytes, 1 dimension N).
///
/// Returns `x`: (N, rows*cols) with the raw pixel values 0..=255 as f32 (not scaled),
/// `y`: N labels, `classes = max label + 1`, `feature_shape = [rows, cols]`, name
/// `idx:IMAGES,LABELS`. Errors name the file: wrong magic (with a hint when images and
/// labels look swapped), other element types, corrupt gzip, truncated or over-long data
/// (with byte offsets), empty sets, and different counts in the two files.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let ib = read_file(images)?;
    idx_from_bytes(ib, images, read_file(labels)?, labels)
}

/// [`load_idx`] on the two files' bytes (the paths name them in messages).
pub(crate) fn idx_from_bytes(ib: Vec<u8>, images: &Path, lb: Vec<u8>, labels: &Path) -> Result<Dataset, DataError> {
    let ib = gunzip_if_gzip(images, ib, &|h| check_header(h, images, Kind::Images))?;
    let (dims, pixels) = parse_idx(&ib, images, Kind::Images)?;
    let lb = gunzip_if_gzip(labels, lb, &|h| check_header(h, labels, Kind::Labels))?;
    let (ldims, lab) = parse_idx(&lb, labels, Kind::Labels)?;

    let n = dims[0];
    if n == 0 {
        return Err(format_err(images, format!("no images (dimensions {})", shape_str(&dims))));
    }
    let feature_shape = dims[1..].to_vec();
    let d: usize = feature_shape.iter().product();
    if d == 0 {
        return Err(format_err(images, format!("images have no pixels (dimensions {})", shape_str(&dims))));
    }
    if ldims[0] != n {
        return Err(format_err(labels, format!("{} labels but {} has {n} images", ldims[0], images.display())));
    }
    let x = Array2::from_shape_vec((n, d), pixels.iter().map(|&p| p as f32).collect())
        .map_err(|e| format_err(images, format!("internal shape error: {e}")))?;
    let y: Vec<usize> = lab.iter().map(|&l| l as usize).collect();
    let ds = Dataset {
        name: format!("idx:{},{}", images.display(), labels.display()),
        x,
        classes: classes_of(&y),
        y,
        feature_shape,
    };
    ds.validate()?;
    Ok(ds)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Images,
    Labels,
}

/// Check the IDX header at the start of `b`, which may be only the first bytes of the file
/// (as [`gunzip_if_gzip`] inflates them): the magic, the element type, the number of
/// dimensions, and that the data fits the limits. Returns the total size the header
/// declares, or how many bytes it needs to tell.
fn check_header(b: &[u8], path: &Path, kind: Kind) -> Result<Head, DataError> {
    let expected = match kind {
        Kind::Images => "0x00000803 (IDX unsigned-byte images: N, rows, cols)",
        Kind::Labels => "0x00000801 (IDX unsigned-byte labels: N)",
    };
    if b.len() < 4 {
        return Ok(Head::Need(4));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if b[0] != 0 || b[1] != 0 {
        return Err(format_err(path, format!("byte 0: bad magic 0x{magic:08x}, expected {expected}: not an IDX file")));
    }
    let (ty, nd) = (b[2], b[3] as usize);
    if ty != UBYTE {
        let name = match ty {
            0x09 => "signed byte",
            0x0B => "i16",
            0x0C => "i32",
            0x0D => "f32",
            0x0E => "f64",
            _ => "unknown",
        };
        return Err(format_err(
            path,
            format!("byte 2: IDX element type 0x{ty:02X} ({name}) is not supported; expected {expected}"),
        ));
    }
    let nd_ok = match kind {
        Kind::Images => nd >= 2,
        Kind::Labels => nd == 1,
    };
    if !nd_ok {
        let swapped = match kind {
            Kind::Images if nd == 1 => " (this is a label file: are the image and label paths swapped?)",
            Kind::Labels if nd >= 2 => " (this is an image file: are the image and label paths swapped?)",
            _ => "",
        };
        return Err(format_err(
            path,
            format!("byte 0: magic 0x{magic:08x} has {nd} dimensions, expected {expected}{swapped}"),
        ));
    }
    let data_offset = 4 + 4 * nd;
    if b.len() < data_offset {
        return Ok(Head::Need(data_offset));
    }
    let dims = dims_of(b, nd);
    let need = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {} are too large", shape_str(&dims))))?;
    if need > MAX_DATASET_VALUES {
        return Err(format_err(
            path,
            format!(
                "dimensions {} hold {need} values, more than the limit of {MAX_DATASET_VALUES} (MAX_DATASET_VALUES)",
                shape_str(&dims)
            ),
        ));
    }
    Ok(Head::Total((data_offset + need) as u64))
}

fn dims_of(b: &[u8], nd: usize) -> Vec<usize> {
    b[4..4 + 4 * nd].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect()
}

/// The dimensions and the element bytes of an unsigned-byte IDX file.
fn parse_idx<'a>(b: &'a [u8], path: &Path, kind: Kind) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    if b.len() < 4 {
        return Err(format_err(path, format!("truncated: {} bytes, too short for the 4-byte IDX magic", b.len())));
    }
    let nd = b[3] as usize;
    let data_offset = 4 + 4 * nd;
    let Head::Total(total) = check_header(b, path, kind)? else {
        return Err(format_err(
            path,
            format!("truncated: {nd} dimensions need a {data_offset}-byte header, but the file has {} bytes", b.len()),
        ));
    };
    let dims = dims_of(b, nd);
    let need = total as usize - data_offset;
    let have = b.len() - data_offset;
    if have != need {
        let what = if have < need { "truncated" } else { "too long" };
        return Err(format_err(
            path,
            format!(
                "{what}: dimensions {} need {need} data bytes from offset {data_offset}, but {have} follow the header",
                shape_str(&dims)
            ),
        ));
    }
    Ok((dims, &b[data_offset..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use std::io::Write;

    fn idx(ty: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, ty, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    /// 3 images of 2x3 pixels (values 0..18) and labels 7, 0, 2.
    fn images() -> Vec<u8> {
        idx(UBYTE, &[3, 2, 3], &(0..18).collect::<Vec<u8>>())
    }

    fn labels() -> Vec<u8> {
        idx(UBYTE, &[3], &[7, 0, 2])
    }

    fn err_of(img: &[u8], lab: &[u8], bad: &str) -> String {
        let dir = TempDir::new("idx-err");
        let e = load_idx(&dir.write("images.idx", img), &dir.write("labels.idx", lab)).unwrap_err().to_string();
        assert!(e.contains(bad), "error does not name {bad}: {e}");
        e
    }

    #[test]
    fn round_trip_plain_and_gzipped() {
        let dir = TempDir::new("idx-ok");
        let (i, l) = (dir.write("i.idx", &images()), dir.write("l.idx", &labels()));
        let ds = load_idx(&i, &l).unwrap();
        assert_eq!((ds.len(), ds.dim(), ds.classes), (3, 6, 8));
        assert_eq!(ds.feature_shape, vec![2, 3]);
        assert_eq!(ds.y, vec![7, 0, 2]);
        assert_eq!(ds.x.row(2).to_vec(), vec![12., 13., 14., 15., 16., 17.]);
        let (ig, lg) = (dir.write("i.idx.gz", &gz(&images())), dir.write("l.idx.gz", &gz(&labels())));
        let dz = load_idx(&ig, &lg).unwrap();
        assert_eq!((dz.x, dz.y), (ds.x, ds.y));
        assert!(dz.name.starts_with("idx:") && dz.name.contains("i.idx.gz,"));
    }

    #[test]
    fn wrong_magic_and_swapped_files() {
        let e = err_of(b"\x1a\x2b\x3c\x4d\0\0\0\0", &labels(), "images.idx");
        assert!(e.contains("bad magic 0x1a2b3c4d, expected 0x00000803"), "{e}");
        let e = err_of(&labels(), &images(), "images.idx");
        assert!(e.contains("magic 0x00000801 has 1 dimensions") && e.contains("swapped"), "{e}");
        let e = err_of(&images(), &images(), "labels.idx");
        assert!(e.contains("magic 0x00000803 has 3 dimensions, expected 0x00000801") && e.contains("swapped"), "{e}");
        let e = err_of(&idx(0x0D, &[3, 2, 3], &[0; 72]), &labels(), "images.idx");
        assert!(e.contains("element type 0x0D (f32) is not supported"), "{e}");
    }

    #[test]
    fn truncated_and_too_long() {
        let e = err_of(&images()[..3], &labels(), "images.idx");
        assert!(e.contains("truncated: 3 bytes"), "{e}");
        let e = err_of(&images()[..10], &labels(), "images.idx");
        assert!(e.contains("truncated: 3 dimensions need a 16-byte header, but the file has 10 bytes"), "{e}");
        let img = images();
        let e = err_of(&img[..img.len() - 1], &labels(), "images.idx");
        assert!(e.contains("truncated: dimensions (3, 2, 3) need 18 data bytes from offset 16, but 17 follow"), "{e}");
        let mut long = labels();
        long.push(1);
        let e = err_of(&images(), &long, "labels.idx");
        assert!(e.contains("too long"), "{e}");
        let g = gz(&images());
        let e = err_of(&g[..g.len() / 2], &labels(), "images.idx");
        assert!(e.contains("gzip data is corrupt or truncated"), "{e}");
        let e = err_of(&idx(UBYTE, &[u32::MAX, u32::MAX, u32::MAX], &[]), &labels(), "images.idx");
        assert!(e.contains("too large"), "{e}");
        let e = err_of(&idx(UBYTE, &[60_000, 280, 280], &[]), &labels(), "images.idx");
        assert!(e.contains("hold 4704000000 values, more than the limit of 268435456 (MAX_DATASET_VALUES)"), "{e}");
    }

    /// A gzip bomb: 1 MB of gzip that inflates to a gigabyte. It is refused after its
    /// first bytes are inflated, whether its magic is wrong or its header claims too much,
    /// and an IDX header that claims little stops inflation just past what it claims.
    #[test]
    fn gzip_bombs_are_refused_before_inflating() {
        // 16 MiB of zeros compresses to ~16 KiB.
        let zeros = vec![0u8; 16 << 20];
        let mut bomb = b"\x1f\x00\x00\x00".to_vec(); // wrong magic
        bomb.extend(&zeros);
        let t = std::time::Instant::now();
        let e = err_of(&gz(&bomb), &labels(), "images.idx");
        assert!(e.contains("bad magic 0x1f000000"), "{e}");
        // Labels claiming 3 bytes followed by 16 MiB: "too long" once the first 16 bytes
        // (the header read) are inflated, not 16 MiB later.
        let mut long = labels();
        long.extend(&zeros);
        let e = err_of(&images(), &gz(&long), "labels.idx");
        assert!(e.contains("too long: dimensions (3,) need 3 data bytes from offset 8, but 8 follow"), "{e}");
        assert!(t.elapsed().as_secs_f64() < 30.0);
        // The generic cap, at a small limit.
        let g = gz(&zeros[..1 << 20]);
        let e = crate::data::gunzip_limited(Path::new("z.gz"), g, &crate::data::no_head, 1000).unwrap_err().to_string();
        assert!(e.contains("z.gz: decompresses to more than 1000 bytes"), "{e}");
    }

    #[test]
    fn count_mismatch_and_empty() {
        let e = err_of(&images(), &idx(UBYTE, &[2], &[1, 2]), "labels.idx");
        assert!(e.contains("2 labels but") && e.contains("images.idx has 3 images"), "{e}");
        let e = err_of(&idx(UBYTE, &[0, 28, 28], &[]), &idx(UBYTE, &[0], &[]), "images.idx");
        assert!(e.contains("no images"), "{e}");
        let e = err_of(&idx(UBYTE, &[2, 0, 28], &[]), &idx(UBYTE, &[2], &[0, 1]), "images.idx");
        assert!(e.contains("no pixels"), "{e}");
    }

    #[test]
    fn missing_file() {
        let dir = TempDir::new("idx-missing");
        let l = dir.write("l.idx", &labels());
        let e = load_idx(&dir.path().join("nope-images.gz"), &l).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("nope-images.gz"), "{e}");
    }
}
