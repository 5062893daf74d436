//! `POST /v1/sql`: a read-only statement as JSON in, rows out as JSON (default), CSV or Arrow
//! IPC (`format`, or the `Accept` header). Analysts get the masked gold models; admins every
//! layer. Mounted under the services' gateway (auth, rate limits, request ids, problem+json).

use std::sync::Arc;

use axum::extract::Extension;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::ArrayWriter;
use events::domain::users::Role;
use serde::Deserialize;
use services::AppState;
use services::http::{ApiJson, AuthUser, Problem};

use crate::sql::{Access, QueryError, QueryResult, SqlEngine};

/// The media type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT (or EXPLAIN, SHOW) statement.
    pub sql: String,
    /// json (default), csv or arrow; else taken from `Accept`.
    #[serde(default)]
    pub format: Option<Format>,
}

/// The routes, to merge into the services' router.
pub fn router(engine: Arc<SqlEngine>) -> Router<AppState> {
    Router::new()
        .route("/v1/sql", post(run_sql))
        .layer(Extension(engine))
}

async fn run_sql(
    Extension(engine): Extension<Arc<SqlEngine>>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, Problem> {
    let access = if user.has(Role::Admin) {
        Access::Admin
    } else if user.has(Role::Analyst) || user.has(Role::FraudAnalyst) {
        Access::Analyst
    } else {
        return Err(Problem::forbidden(
            "SQL needs the analyst, fraud_analyst or admin role",
        ));
    };
    if req.sql.trim().is_empty() {
        return Err(Problem::bad_request("sql is empty"));
    }
    let format = req.format.unwrap_or_else(|| {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains(ARROW_STREAM) {
            Format::Arrow
        } else {
            Format::Json
        }
    });
    let result = engine
        .query(&req.sql, &user.user_id.to_string(), access)
        .await
        .map_err(problem)?;
    encode(&result, format).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Encoding failed",
            e.to_string(),
        )
    })
}

fn problem(e: QueryError) -> Problem {
    match &e {
        QueryError::ReadOnly(_) => Problem::new(StatusCode::FORBIDDEN, "Read-only", e.to_string()),
        QueryError::Invalid(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "Invalid query", e.to_string())
        }
        QueryError::Timeout(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "Query timed out",
            e.to_string(),
        ),
        QueryError::Failed(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Query failed",
            e.to_string(),
        ),
    }
}

/// Encodes an answer in the asked format.
pub fn encode(
    result: &QueryResult,
    format: Format,
) -> Result<Response, datafusion::arrow::error::ArrowError> {
    Ok(match format {
        Format::Json => {
            let mut w = ArrayWriter::new(Vec::new());
            for b in &result.batches {
                w.write(b)?;
            }
            w.finish()?;
            let rows: serde_json::Value = match w.into_inner() {
                bytes if bytes.is_empty() => serde_json::json!([]),
                bytes => serde_json::from_slice(&bytes).unwrap_or(serde_json::json!([])),
            };
            let columns: Vec<serde_json::Value> = result
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            Json(serde_json::json!({
                "columns": columns,
                "rows": rows,
                "row_count": result.rows(),
            }))
            .into_response()
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = CsvWriterBuilder::new().with_header(true).build(&mut buf);
                if result.batches.is_empty() {
                    w.write(&datafusion::arrow::record_batch::RecordBatch::new_empty(
                        result.schema.clone(),
                    ))?;
                }
                for b in &result.batches {
                    w.write(b)?;
                }
            }
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], buf).into_response()
        }
        Format::Arrow => {
            let mut buf = Vec::new();
            {
                let mut w = StreamWriter::try_new(&mut buf, &result.schema)?;
                for b in &result.batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            ([(header::CONTENT_TYPE, ARROW_STREAM)], buf).into_response()
        }
    })
}
