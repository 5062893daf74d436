//! The PostgreSQL wire protocol for analysts' tools (psql, DBeaver, BI), via
//! `datafusion-postgres`, over the analyst context (gold models, PII masked) with `pg_catalog`
//! and `information_schema`, so `\dt` works. Writes are refused with SQLSTATE 25006
//! (read-only transaction), every statement is audited, and a query that runs longer than
//! `query_timeout_secs` fails (the context's [`crate::deadline::Deadline`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::{QueryHook, ServerOptions};

use crate::WarehouseError;
use crate::sql::{Access, CATALOG, SqlEngine};

/// Serves the analyst context on `addr` (`host:port`) until the task is dropped.
pub async fn serve(engine: Arc<SqlEngine>, addr: &str) -> Result<(), WarehouseError> {
    let (host, port) = crate::host_port(addr)
        .ok_or_else(|| WarehouseError::Busy(format!("bad pg address {addr:?}: use host:port")))?;
    let ctx = engine.context(Access::Analyst).clone();
    setup_pg_catalog(&ctx, CATALOG, Arc::new(AuthManager::default()))
        .map_err(|e| WarehouseError::DataFusion(*e))?;
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(ReadOnly { engine }),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let opts = ServerOptions::new().with_host(host).with_port(port);
    tracing::info!(addr, "warehouse SQL over the PostgreSQL protocol");
    datafusion_postgres::serve_with_hooks(Arc::new(ctx), &opts, hooks).await?;
    Ok(())
}

/// Refuses anything that would write, and audits every statement.
struct ReadOnly {
    engine: Arc<SqlEngine>,
}

fn writes(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Insert { .. }
            | Statement::Update { .. }
            | Statement::Delete { .. }
            | Statement::Merge { .. }
            | Statement::Truncate { .. }
            | Statement::Copy { .. }
            | Statement::CreateTable { .. }
            | Statement::CreateView { .. }
            | Statement::CreateIndex { .. }
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction { .. }
            | Statement::AlterTable { .. }
            | Statement::Drop { .. }
            | Statement::Grant { .. }
            | Statement::Revoke { .. }
    )
}

impl ReadOnly {
    fn check<C: ClientInfo + ?Sized>(&self, statement: &Statement, client: &C) -> PgWireResult<()> {
        let who = client
            .metadata()
            .get("user")
            .cloned()
            .unwrap_or_else(|| "anonymous".into());
        let who = format!("pg:{who}@{}", client.socket_addr());
        let sql = statement.to_string();
        if writes(statement) {
            let msg = "the warehouse is read-only".to_owned();
            self.engine
                .audit(&who, Access::Analyst, &sql, &msg, 0, Default::default());
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "25006".into(),
                msg,
            ))));
        }
        self.engine.audit(
            &who,
            Access::Analyst,
            &sql,
            "started",
            0,
            Default::default(),
        );
        Ok(())
    }
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement, client).err().map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.check(statement, client).err().map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
