//! Interactions (user, item, weight, time) from a CSV or Parquet file or from the warehouse,
//! and the sparse user × item matrix the models train on. Ids stay strings here: the model
//! maps them to dense row numbers and keeps both directions.

use std::collections::HashMap;
use std::path::Path;

use crate::Error;

/// One implicit-feedback signal: `user` looked at, carted or bought `item` at `ts_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub user: String,
    pub item: String,
    /// Strength of the signal (the warehouse uses view 1, add-to-cart 3, purchase 5).
    pub weight: f32,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// Whether this was a purchase (the "exclude already bought" filter uses it).
    pub purchase: bool,
}

/// Weights the warehouse gives each kind of interaction.
pub const VIEW_WEIGHT: f32 = 1.0;
pub const CART_WEIGHT: f32 = 3.0;
pub const PURCHASE_WEIGHT: f32 = 5.0;

/// Reads `user,item,weight,timestamp[,kind]` rows from a `.csv` or `.parquet` file.
///
/// `timestamp` is unix seconds or milliseconds (values below 10^11 are taken as seconds) or,
/// in CSV, an RFC 3339 time; `kind` (optional) is `view`, `cart` or `purchase`. Without a
/// `kind` column a row counts as a purchase when its weight is at least [`PURCHASE_WEIGHT`].
pub fn read_file(path: &Path) -> Result<Vec<Interaction>, Error> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => read_csv(path),
        "parquet" => read_parquet(path),
        _ => Err(Error::input(format!(
            "{}: expected a .csv or .parquet interactions file",
            path.display()
        ))),
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::input(format!("{}: {e}", path.display()))
}

fn parse_ts(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(normalise_ts(n));
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some(normalise_ts(f as i64));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn normalise_ts(n: i64) -> i64 {
    if n.abs() < 100_000_000_000 {
        n * 1000
    } else {
        n
    }
}

fn parse_kind(kind: Option<&str>, weight: f32) -> Result<bool, String> {
    match kind.map(str::trim) {
        None | Some("") => Ok(weight >= PURCHASE_WEIGHT),
        Some("purchase") => Ok(true),
        Some("view") | Some("cart") => Ok(false),
        Some(other) => Err(format!("kind {other:?} is not one of view, cart, purchase")),
    }
}

fn read_csv(path: &Path) -> Result<Vec<Interaction>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let mut lines = text.lines().enumerate();
    let header: Vec<String> = match lines.next() {
        Some((_, h)) => h
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect(),
        None => return Err(io(path, "empty file (expected a header line)")),
    };
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(u), Some(i), Some(w), Some(t)) =
        (col("user"), col("item"), col("weight"), col("timestamp"))
    else {
        return Err(io(
            path,
            format!("header {header:?} must name the columns user, item, weight, timestamp"),
        ));
    };
    let k = col("kind");
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = |c: usize| fields.get(c).copied().unwrap_or("");
        let bad = |what: String| io(path, format!("line {}: {what}", n + 1));
        let (user, item) = (at(u), at(i));
        if user.is_empty() || item.is_empty() {
            return Err(bad("user and item must not be empty".into()));
        }
        let weight: f32 = at(w)
            .parse()
            .map_err(|_| bad(format!("weight {:?} is not a number", at(w))))?;
        if !weight.is_finite() || weight <= 0.0 {
            return Err(bad(format!("weight {weight} must be positive")));
        }
        let ts_ms = parse_ts(at(t)).ok_or_else(|| {
            bad(format!(
                "timestamp {:?} is not unix time or RFC 3339",
                at(t)
            ))
        })?;
        let purchase = parse_kind(k.map(at), weight).map_err(bad)?;
        out.push(Interaction {
            user: user.to_string(),
            item: item.to_string(),
            weight,
            ts_ms,
            purchase,
        });
    }
    Ok(out)
}

fn read_parquet(path: &Path) -> Result<Vec<Interaction>, Error> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| io(path, e))?
        .build()
        .map_err(|e| io(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| io(path, e))?;
        from_batch(&batch, &mut out).map_err(|e| io(path, e))?;
    }
    Ok(out)
}

/// Appends the rows of an Arrow batch with columns `user`, `item`, `weight`, `timestamp`
/// (a timestamp type or unix seconds/ms) and optionally `kind` (how Parquet files and the
/// warehouse's query results are read).
pub fn from_batch(
    batch: &arrow::record_batch::RecordBatch,
    out: &mut Vec<Interaction>,
) -> Result<(), String> {
    use arrow::array::{Array, AsArray};
    use arrow::compute::cast;
    use arrow::datatypes::{DataType, Float32Type, Int64Type, TimeUnit};
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| format!("no column {name:?} (need user, item, weight, timestamp)"))
    };
    let cast_to = |a: &arrow::array::ArrayRef, t: &DataType, name: &str| {
        cast(a, t).map_err(|e| format!("column {name}: {e}"))
    };
    let users = cast_to(&column("user")?, &DataType::Utf8, "user")?;
    let items = cast_to(&column("item")?, &DataType::Utf8, "item")?;
    let weights = cast_to(&column("weight")?, &DataType::Float32, "weight")?;
    let ts = column("timestamp")?;
    let (ts, scale) = match ts.data_type() {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => (
            cast_to(
                &cast_to(
                    &ts,
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                    "timestamp",
                )?,
                &DataType::Int64,
                "timestamp",
            )?,
            false,
        ),
        _ => (cast_to(&ts, &DataType::Int64, "timestamp")?, true),
    };
    let kinds = batch
        .column_by_name("kind")
        .map(|k| cast_to(k, &DataType::Utf8, "kind"))
        .transpose()?;
    let (users, items) = (users.as_string::<i32>(), items.as_string::<i32>());
    let weights = weights.as_primitive::<Float32Type>();
    let ts = ts.as_primitive::<Int64Type>();
    for r in 0..batch.num_rows() {
        let bad = |what: String| format!("row {}: {what}", out.len() + 1);
        if users.is_null(r) || items.is_null(r) || weights.is_null(r) || ts.is_null(r) {
            return Err(bad(
                "user, item, weight and timestamp must not be null".into()
            ));
        }
        let weight = weights.value(r);
        if !weight.is_finite() || weight <= 0.0 {
            return Err(bad(format!("weight {weight} must be positive")));
        }
        let kind = kinds
            .as_ref()
            .map(|k| k.as_string::<i32>())
            .filter(|k| !k.is_null(r))
            .map(|k| k.value(r));
        let purchase = parse_kind(kind, weight).map_err(bad)?;
        let t = ts.value(r);
        out.push(Interaction {
            user: users.value(r).to_string(),
            item: items.value(r).to_string(),
            weight,
            ts_ms: if scale { normalise_ts(t) } else { t },
            purchase,
        });
    }
    Ok(())
}

/// Writes interactions as the CSV [`read_file`] reads (used by fixtures and `ml export`).
pub fn write_csv(path: &Path, rows: &[Interaction]) -> Result<(), Error> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let mut write = || -> std::io::Result<()> {
        writeln!(w, "user,item,weight,timestamp,kind")?;
        for r in rows {
            let kind = if r.purchase { "purchase" } else { "view" };
            writeln!(w, "{},{},{},{},{kind}", r.user, r.item, r.weight, r.ts_ms)?;
        }
        w.flush()
    };
    write().map_err(|e| io(path, e))
}

/// A sparse matrix in compressed rows: row `r`'s entries are `cols[ptr[r]..ptr[r + 1]]`.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    pub ptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<f32>,
}

impl Csr {
    pub fn rows(&self) -> usize {
        self.ptr.len().saturating_sub(1)
    }
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.ptr[r], self.ptr[r + 1]);
        (&self.cols[a..b], &self.vals[a..b])
    }
    pub fn nnz(&self) -> usize {
        self.cols.len()
    }
    /// From (row, col, value) triples; duplicates are summed; columns sorted within a row.
    pub fn from_triples(rows: usize, mut triples: Vec<(u32, u32, f32)>) -> Csr {
        triples.sort_unstable_by_key(|t| (t.0, t.1));
        let mut ptr = vec![0usize; rows + 1];
        let mut cols = Vec::with_capacity(triples.len());
        let mut vals: Vec<f32> = Vec::with_capacity(triples.len());
        let mut last: Option<(u32, u32)> = None;
        for (r, c, v) in triples {
            if last == Some((r, c)) {
                *vals.last_mut().expect("a previous entry") += v;
                continue;
            }
            last = Some((r, c));
            ptr[r as usize + 1] += 1;
            cols.push(c);
            vals.push(v);
        }
        for r in 0..rows {
            ptr[r + 1] += ptr[r];
        }
        Csr { ptr, cols, vals }
    }
    /// The same matrix by columns (`cols` becomes the number of rows of the result).
    pub fn transpose(&self, cols: usize) -> Csr {
        let mut triples = Vec::with_capacity(self.nnz());
        for r in 0..self.rows() {
            let (c, v) = self.row(r);
            for (c, v) in c.iter().zip(v) {
                triples.push((*c, r as u32, *v));
            }
        }
        Csr::from_triples(cols, triples)
    }
}

/// Interactions indexed: dense user and item numbers, the weighted matrix (recency-decayed
/// weights summed per user and item), and what each user bought.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub user_index: HashMap<String, u32>,
    pub item_index: HashMap<String, u32>,
    /// users × items.
    pub matrix: Csr,
    /// Per user, the items bought (sorted).
    pub bought: Vec<Vec<u32>>,
    /// Earliest and latest interaction time (unix ms).
    pub time_range: (i64, i64),
    /// Number of interactions it was built from.
    pub interactions: usize,
}

/// How interactions become matrix weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weighting {
    /// A signal loses half its weight every `half_life_days` before the newest interaction
    /// (0 turns decay off).
    pub half_life_days: f64,
}

impl Default for Weighting {
    fn default() -> Self {
        Weighting {
            half_life_days: 30.0,
        }
    }
}

impl Dataset {
    /// Indexes `rows`. Users and items are numbered in order of first appearance, so the
    /// same input gives the same model.
    pub fn build(rows: &[Interaction], weighting: Weighting) -> Result<Dataset, Error> {
        if rows.is_empty() {
            return Err(Error::input("no interactions to train on"));
        }
        Ok(Self::build_with(
            rows,
            weighting,
            Vec::new(),
            HashMap::new(),
        ))
    }

    /// Like [`Dataset::build`] with the item numbering fixed in advance (items of `items`
    /// keep their numbers; others are appended): evaluation uses it so the training part of
    /// a split ranks the same item set as the whole.
    pub fn build_with(
        rows: &[Interaction],
        weighting: Weighting,
        items: Vec<String>,
        item_index: HashMap<String, u32>,
    ) -> Dataset {
        let mut users = Vec::new();
        let mut user_index: HashMap<String, u32> = HashMap::new();
        let (mut items, mut item_index) = (items, item_index);
        let newest = rows.iter().map(|r| r.ts_ms).max().unwrap_or(0);
        let oldest = rows.iter().map(|r| r.ts_ms).min().unwrap_or(0);
        let half_life_ms = weighting.half_life_days * 86_400_000.0;
        let mut triples = Vec::with_capacity(rows.len());
        let mut bought: Vec<Vec<u32>> = Vec::new();
        for r in rows {
            let u = *user_index.entry(r.user.clone()).or_insert_with(|| {
                users.push(r.user.clone());
                bought.push(Vec::new());
                (users.len() - 1) as u32
            });
            let i = *item_index.entry(r.item.clone()).or_insert_with(|| {
                items.push(r.item.clone());
                (items.len() - 1) as u32
            });
            let decay = if half_life_ms > 0.0 {
                0.5f64.powf((newest - r.ts_ms) as f64 / half_life_ms) as f32
            } else {
                1.0
            };
            triples.push((u, i, r.weight * decay));
            if r.purchase {
                bought[u as usize].push(i);
            }
        }
        for b in &mut bought {
            b.sort_unstable();
            b.dedup();
        }
        Dataset {
            matrix: Csr::from_triples(users.len(), triples),
            users,
            items,
            user_index,
            item_index,
            bought,
            time_range: (oldest, newest),
            interactions: rows.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(u: &str, i: &str, w: f32, t: i64) -> Interaction {
        Interaction {
            user: u.into(),
            item: i.into(),
            weight: w,
            ts_ms: t,
            purchase: w >= PURCHASE_WEIGHT,
        }
    }

    #[test]
    fn duplicates_sum_and_old_signals_decay() {
        let day = 86_400_000;
        let rows = vec![
            row("a", "x", 1.0, 0),
            row("a", "x", 1.0, 30 * day),
            row("a", "y", 5.0, 30 * day),
            row("b", "y", 3.0, 30 * day),
        ];
        let d = Dataset::build(&rows, Weighting::default()).unwrap();
        assert_eq!(d.users, ["a", "b"]);
        assert_eq!(d.items, ["x", "y"]);
        let (cols, vals) = d.matrix.row(0);
        assert_eq!(cols, [0, 1]);
        assert!(
            (vals[0] - 1.5).abs() < 1e-6,
            "half-life 30 days: {}",
            vals[0]
        );
        assert_eq!(vals[1], 5.0);
        assert_eq!(d.bought, vec![vec![1], vec![]]);
        let t = d.matrix.transpose(2);
        assert_eq!(t.row(1).0, [0, 1]);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("ml-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("i.csv");
        std::fs::write(
            &p,
            "user,item,weight,timestamp\nu1,i1,1,1700000000\nu2,i2,-3,1\n",
        )
        .unwrap();
        let e = read_file(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("positive"), "{e}");
        std::fs::write(
            &p,
            "user,item,weight,timestamp\nu1,i1,1,1700000000\nu2,i2,5,2024-01-01T00:00:00Z\n",
        )
        .unwrap();
        let rows = read_file(&p).unwrap();
        assert_eq!(rows[0].ts_ms, 1_700_000_000_000);
        assert!(rows[1].purchase);
        std::fs::write(&p, "a,b\n").unwrap();
        assert!(
            read_file(&p)
                .unwrap_err()
                .to_string()
                .contains("user, item")
        );
    }
}
