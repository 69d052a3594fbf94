//! Numeric CSV files: one example per line, features first, the integer label last.

use super::{classes_of, format_err, gunzip_if_gzip, read_file, DataError, Dataset, MAX_CLASSES};
use ndarray::Array2;
use std::path::Path;

/// Load a numeric CSV file: one example per line, comma-separated, **the last column is the
/// integer class label** (0, 1, ..., C-1) and every other column is a feature.
///
/// Returns a [`Dataset`] with `x`: (N, D) where D = columns - 1, `y`: N labels,
/// `classes = max label + 1` and `feature_shape = [D]`; its name is `csv:PATH`.
///
/// - The first row is a header, and skipped, when any of its non-empty cells is not a
///   number; it must still have as many fields as the data rows.
/// - Blank lines and lines starting with `#` (as `np.savetxt` writes headers) are skipped.
/// - Cells are trimmed of spaces and of one pair of surrounding double quotes; `\r\n` line
///   ends and a UTF-8 byte-order mark are accepted. Quoted cells containing commas are not.
/// - Labels may be written as `3` or `3.0`, but must be whole numbers in `0..100000`.
/// - A gzip-compressed file (e.g. `train.csv.gz`) is decompressed first.
///
/// Errors name the file and the line (1-based, counting every physical line) and column
/// (1-based): ragged rows, cells that are not numbers, NaN or infinite values, values that
/// overflow f32, negative, fractional or huge labels, and files with no data rows.
pub fn load_csv(path: &Path) -> Result<Dataset, DataError> {
    let bytes = gunzip_if_gzip(path, read_file(path)?)?;
    let mut ds = parse_csv(&bytes, path)?;
    ds.name = format!("csv:{}", path.display());
    ds.validate()?;
    Ok(ds)
}

/// Parse CSV `bytes` (see [`load_csv`]); `path` is only used in error messages. The
/// result is named after `path` and has `feature_shape = [D]`.
pub(crate) fn parse_csv(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format_err(path, format!("line {line} (byte offset {at}): invalid UTF-8; expected a plain-text CSV file"))
    })?;
    // Excel and some Windows tools start UTF-8 files with a byte-order mark; left in, it
    // would make the first cell non-numeric and turn the first data row into a "header".
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    // (field count, line that set it), fixed by the first non-blank row.
    let mut width: Option<(usize, usize)> = None;
    let mut header_line: Option<usize> = None;
    let mut xs: Vec<f32> = Vec::new();
    let mut ys: Vec<usize> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(clean_cell).collect();
        match width {
            Some((w, wline)) => {
                if cells.len() != w {
                    return Err(format_err(
                        path,
                        format!("line {lineno} has {} fields, expected {w} (as on line {wline})", cells.len()),
                    ));
                }
            }
            None => {
                if cells.len() < 2 {
                    let hint = if line.contains(';') || line.contains('\t') {
                        " (the file looks semicolon- or tab-separated; only commas are supported)"
                    } else {
                        ""
                    };
                    return Err(format_err(
                        path,
                        format!(
                            "line {lineno} has 1 field; need at least one feature column and the label column{hint}"
                        ),
                    ));
                }
                width = Some((cells.len(), lineno));
                // Empty cells do not make a header: `1,,0` is a data row with a missing value
                // (reported below), while pandas' `,a,b,label` still counts as a header.
                if cells.iter().any(|c| !c.is_empty() && c.parse::<f64>().is_err()) {
                    header_line = Some(lineno);
                    continue;
                }
            }
        }
        let (features, label) = cells.split_at(cells.len() - 1);
        for (j, cell) in features.iter().enumerate() {
            let v = parse_number(cell)
                .map_err(|why| format_err(path, format!("line {lineno}, column {}: {why}", j + 1)))?;
            xs.push(v);
        }
        let col = cells.len();
        let y = parse_label(label[0])
            .map_err(|why| format_err(path, format!("line {lineno}, column {col} (the label): {why}")))?;
        ys.push(y);
    }

    let Some((w, _)) = width else {
        return Err(format_err(path, "empty file: no data rows"));
    };
    if ys.is_empty() {
        let h = header_line.unwrap_or(1);
        return Err(format_err(path, format!("no data rows: only a header (line {h})")));
    }
    let (n, d) = (ys.len(), w - 1);
    let x = Array2::from_shape_vec((n, d), xs).map_err(|e| format_err(path, format!("internal shape error: {e}")))?;
    Ok(Dataset { name: path.display().to_string(), x, classes: classes_of(&ys), y: ys, feature_shape: vec![d] })
}

/// Trim spaces and one pair of surrounding double quotes.
fn clean_cell(cell: &str) -> &str {
    let c = cell.trim();
    c.strip_prefix('"').and_then(|c| c.strip_suffix('"')).map_or(c, str::trim)
}

/// A finite feature value that fits in f32, or why not.
fn parse_number(cell: &str) -> Result<f32, String> {
    if cell.is_empty() {
        return Err("empty cell is not a number".into());
    }
    let v: f64 = cell.parse().map_err(|_| format!("`{cell}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{cell}` is not finite (NaN and Inf are not allowed)"));
    }
    let f = v as f32;
    if !f.is_finite() {
        return Err(format!("`{cell}` overflows f32 (largest is {:e})", f32::MAX));
    }
    Ok(f)
}

/// A class label: a whole number in `0..MAX_CLASSES`, or why not.
fn parse_label(cell: &str) -> Result<usize, String> {
    if cell.is_empty() {
        return Err("empty label".into());
    }
    let v: f64 = cell.parse().map_err(|_| format!("label `{cell}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("label `{cell}` is not finite"));
    }
    if v.fract() != 0.0 {
        return Err(format!("label `{cell}` is not a whole number; labels are class indices 0..C-1"));
    }
    if v < 0.0 {
        return Err(format!("label `{cell}` is negative; labels are class indices 0..C-1"));
    }
    if v >= MAX_CLASSES as f64 {
        return Err(format!(
            "label `{cell}` is too large (at most {}); is the label really the last column?",
            MAX_CLASSES - 1
        ));
    }
    Ok(v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    fn load_str(dir: &TempDir, name: &str, text: &str) -> Result<Dataset, DataError> {
        load_csv(&dir.write(name, text.as_bytes()))
    }

    fn err_of(text: &str) -> String {
        let dir = TempDir::new("csv-err");
        let e = load_str(&dir, "bad.csv", text).unwrap_err().to_string();
        assert!(e.contains("bad.csv"), "error does not name the file: {e}");
        e
    }

    #[test]
    fn round_trip_with_header_and_crlf() {
        let dir = TempDir::new("csv-ok");
        let ds = load_str(
            &dir,
            "ok.csv",
            "\u{feff}a,b,\"label\"\r\n1, 2.5 ,0\r\n\r\n# comment\r\n-3,4e1,\"2\"\r\n5,6,1.0\r\n",
        )
        .unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.dim(), 2);
        assert_eq!(ds.feature_shape, vec![2]);
        assert_eq!(ds.classes, 3);
        assert_eq!(ds.y, vec![0, 2, 1]);
        assert_eq!(ds.x.row(1).to_vec(), vec![-3.0, 40.0]);
        assert!(ds.name.starts_with("csv:") && ds.name.ends_with("ok.csv"));
    }

    #[test]
    fn no_header_no_trailing_newline() {
        let dir = TempDir::new("csv-nohdr");
        let ds = load_str(&dir, "ok.csv", "1,2,3\n4,5,0").unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.x.row(0).to_vec(), vec![1.0, 2.0]);
        assert_eq!(ds.y, vec![3, 0]);
        assert_eq!(ds.classes, 4);
    }

    #[test]
    fn gzipped_csv_is_accepted() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"1,2,1\n3,4,0\n").unwrap();
        let dir = TempDir::new("csv-gz");
        let ds = load_csv(&dir.write("ok.csv.gz", &enc.finish().unwrap())).unwrap();
        assert_eq!(ds.y, vec![1, 0]);
    }

    #[test]
    fn ragged_row_names_line_and_counts() {
        let e = err_of("1,2,3,0\n1,2,3,1\n1,2,1\n");
        assert!(e.contains("line 3 has 3 fields, expected 4 (as on line 1)"), "{e}");
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let e = err_of("x,y,label\n1,2,0\n1,abc,1\n");
        assert!(e.contains("line 3, column 2: `abc` is not a number"), "{e}");
        let e = err_of("1,,0\n");
        assert!(e.contains("line 1, column 2: empty cell"), "{e}");
        let e = err_of("1,2,0\n1,,0\n");
        assert!(e.contains("line 2, column 2: empty cell"), "{e}");
    }

    #[test]
    fn nan_and_inf_are_rejected() {
        let e = err_of("1,2,0\n1,NaN,1\n");
        assert!(e.contains("line 2, column 2: `NaN` is not finite"), "{e}");
        let e = err_of("1,2,0\n-inf,2,1\n");
        assert!(e.contains("line 2, column 1: `-inf` is not finite"), "{e}");
        let e = err_of("1,2,0\n1e39,2,1\n");
        assert!(e.contains("line 2, column 1: `1e39` overflows f32"), "{e}");
    }

    #[test]
    fn bad_labels_are_rejected() {
        let e = err_of("1,2,0\n1,2,-1\n");
        assert!(e.contains("line 2, column 3 (the label): label `-1` is negative"), "{e}");
        let e = err_of("1,2,0\n1,2,1.5\n");
        assert!(e.contains("line 2, column 3 (the label): label `1.5` is not a whole number"), "{e}");
        let e = err_of("1,2,0\n1,2,1e9\n");
        assert!(e.contains("label `1e9` is too large"), "{e}");
        let e = err_of("1,2,0\n1,2,nan\n");
        assert!(e.contains("label `nan` is not finite"), "{e}");
        let e = err_of("1,2,0\n1,2,cat\n");
        assert!(e.contains("line 2, column 3 (the label): label `cat` is not a number"), "{e}");
    }

    #[test]
    fn empty_and_header_only_files() {
        assert!(err_of("").contains("empty file"));
        assert!(err_of("\n  \n# only a comment\n").contains("empty file"));
        let e = err_of("a,b,label\n");
        assert!(e.contains("no data rows: only a header (line 1)"), "{e}");
    }

    #[test]
    fn single_column_and_wrong_separator() {
        let e = err_of("1\n2\n");
        assert!(e.contains("line 1 has 1 field"), "{e}");
        let e = err_of("1;2;0\n");
        assert!(e.contains("semicolon"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_byte_offset() {
        let dir = TempDir::new("csv-utf8");
        let e = load_csv(&dir.write("bin.csv", b"1,2,0\n1,\xff,1\n")).unwrap_err().to_string();
        assert!(e.contains("bin.csv") && e.contains("line 2 (byte offset 8): invalid UTF-8"), "{e}");
    }

    #[test]
    fn missing_file_names_it() {
        let dir = TempDir::new("csv-missing");
        let p = dir.path().join("nope.csv");
        let e = load_csv(&p).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }));
        assert!(e.to_string().contains("nope.csv"), "{e}");
    }
}
