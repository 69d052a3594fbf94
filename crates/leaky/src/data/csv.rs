//! Numeric CSV files: one example per line, features first, the integer label last. Read
//! with the `csv` crate (RFC 4180 quoting), so quoted cells may hold commas and newlines.

use super::{classes_of, format_err, gunzip_if_gzip, no_head, read_file, DataError, Dataset, MAX_CLASSES};
use crate::limits::MAX_DATASET_VALUES;
use ndarray::Array2;
use std::path::Path;

/// Load a numeric CSV file: one example per row, comma-separated, **the last column is the
/// integer class label** (0, 1, ..., C-1) and every other column is a feature.
///
/// Returns a [`Dataset`] with `x`: (N, D) where D = columns - 1, `y`: N labels,
/// `classes = max label + 1` and `feature_shape = [D]`; its name is `csv:PATH`.
///
/// - The first row is a header, and skipped, when any of its non-empty cells is not a
///   number; it must still have as many fields as the data rows.
/// - Blank lines and lines starting with `#` (as `np.savetxt` writes headers) are skipped.
/// - Cells may be quoted (`"1,5"` is one cell; `""` inside quotes is a quote), and are
///   trimmed of spaces; `\r\n` line ends and a UTF-8 byte-order mark are accepted.
/// - Labels may be written as `3` or `3.0`, but must be whole numbers in `0..100000`.
/// - A gzip-compressed file (e.g. `train.csv.gz`) is decompressed first.
///
/// Errors name the file and the line (1-based, counting every physical line; for a row
/// spanning lines, the line it starts on) and column (1-based): ragged rows, cells that are
/// not numbers, NaN or infinite values, values that overflow f32, negative, fractional or
/// huge labels, and files with no data rows.
pub fn load_csv(path: &Path) -> Result<Dataset, DataError> {
    csv_from_bytes(read_file(path)?, path)
}

/// [`load_csv`] on the file's bytes (`path` names it in messages).
pub(crate) fn csv_from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Dataset, DataError> {
    let bytes = gunzip_if_gzip(path, bytes, &no_head)?;
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

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true) // ragged rows are reported below, naming both lines
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());

    // (field count, line that set it), fixed by the first non-blank row.
    let mut width: Option<(usize, u64)> = None;
    let mut header_line: Option<u64> = None;
    let mut xs: Vec<f32> = Vec::new();
    let mut ys: Vec<usize> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(String::new(), |p| format!("line {}: ", p.line()));
                return Err(format_err(path, format!("{line}malformed CSV: {e}")));
            }
        }
        let lineno = record.position().map_or(0, |p| p.line());
        // A line of spaces only is one empty cell: skipped like a blank line.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        match width {
            Some((w, wline)) => {
                if record.len() != w {
                    return Err(format_err(
                        path,
                        format!("line {lineno} has {} fields, expected {w} (as on line {wline})", record.len()),
                    ));
                }
            }
            None => {
                if record.len() < 2 {
                    let raw = &record[0];
                    let hint = if raw.contains(';') || raw.contains('\t') {
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
                width = Some((record.len(), lineno));
                // Empty cells do not make a header: `1,,0` is a data row with a missing value
                // (reported below), while pandas' `,a,b,label` still counts as a header.
                if record.iter().any(|c| !c.is_empty() && c.parse::<f64>().is_err()) {
                    header_line = Some(lineno);
                    continue;
                }
            }
        }
        if xs.len() + record.len() > MAX_DATASET_VALUES {
            return Err(format_err(
                path,
                format!("line {lineno}: more than {MAX_DATASET_VALUES} values, the limit for a data set (MAX_DATASET_VALUES)"),
            ));
        }
        let col = record.len();
        for j in 0..col - 1 {
            let v = parse_number(&record[j])
                .map_err(|why| format_err(path, format!("line {lineno}, column {}: {why}", j + 1)))?;
            xs.push(v);
        }
        let y = parse_label(&record[col - 1])
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
    fn quoted_cells_may_hold_commas_quotes_and_newlines() {
        let dir = TempDir::new("csv-quoted");
        // A quoted header cell with a comma and an escaped quote, and a data row whose
        // quoted cell spans two lines: the next row's line number is still the physical one.
        let ds = load_str(&dir, "q.csv", "\"a, b\",\"say \"\"hi\"\"\",label\n\"1\",\" 2 \",0\n3,4,\"1\"\n").unwrap();
        assert_eq!((ds.len(), ds.dim(), ds.y.clone()), (2, 2, vec![0, 1]));
        assert_eq!(ds.x.row(0).to_vec(), vec![1.0, 2.0]);
        let e = err_of("x,\"multi\nline\",label\n1,2,0\n1,oops,1\n");
        assert!(e.contains("line 4, column 2: `oops` is not a number"), "{e}");
        // A quoted comma inside a number cell is one cell, and not a number.
        let e = err_of("1,2,0\n\"1,5\",2,1\n");
        assert!(e.contains("line 2, column 1: `1,5` is not a number"), "{e}");
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
