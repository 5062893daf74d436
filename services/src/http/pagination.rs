//! Cursor pagination: `?limit=&cursor=`, where the cursor is the opaque last id of the
//! previous page. Stable under inserts, unlike offsets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::problem::Problem;

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// From a route's own query struct (which cannot `#[serde(flatten)]` this one: flattening
    /// breaks number parsing in query strings).
    pub fn of(limit: Option<i64>, cursor: Option<String>) -> Self {
        PageQuery { limit, cursor }
    }

    /// (limit, id after which the page starts).
    pub fn parse(&self) -> Result<(i64, Option<Uuid>), Problem> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(Problem::invalid("limit", "must be 1 to 100"));
        }
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| Uuid::from_slice(&b).ok())
                    .ok_or_else(|| {
                        Problem::invalid("cursor", "not a cursor returned by this API")
                    })?,
            ),
        };
        Ok((limit, after))
    }
}

/// One page of a list.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched after the cursor.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| {
                rows.last()
                    .map(|r| URL_SAFE_NO_PAD.encode(id(r).as_bytes()))
            })
            .flatten();
        Page {
            items: rows,
            next_cursor,
        }
    }
}
