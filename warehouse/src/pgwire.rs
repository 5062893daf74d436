//! The PostgreSQL wire protocol for analysts' tools (psql, DBeaver, BI), via
//! `datafusion-postgres`, over the analyst context (gold models, PII masked) with `pg_catalog`
//! and `information_schema`, so `\dt` works. Clients sign in with a Shopstream access token
//! as the password (`POST /v1/auth/login`; any user name): the token must be valid, of a live
//! session, and hold the analyst, fraud_analyst or admin role. Writes are refused with
//! SQLSTATE 25006 (read-only transaction), every statement is audited under the signed-in
//! user, and a query that runs longer than `query_timeout_secs` fails (the context's
//! [`crate::deadline::Deadline`]).

use std::fmt::Debug;
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
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::Authentication;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::{DfSessionService, QueryHook, ServerOptions};
use events::domain::users::Role;
use futures::{Sink, SinkExt};
use services::AppState;

use crate::WarehouseError;
use crate::sql::{Access, CATALOG, SqlEngine};

/// Where a connection's signed-in user id is kept (client metadata).
const USER_KEY: &str = "shopstream.user_id";

/// Serves the analyst context on `addr` (`host:port`) until the task is dropped; `app`
/// checks the access tokens clients sign in with.
pub async fn serve(
    engine: Arc<SqlEngine>,
    addr: &str,
    app: AppState,
) -> Result<(), WarehouseError> {
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
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        session: Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks)),
        cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
        startup: Arc::new(TokenSignIn {
            app,
            params: DefaultServerParameterProvider::default(),
            pids: RandomPidSecretKeyGenerator::default(),
            connections,
        }),
    });
    let opts = ServerOptions::new().with_host(host).with_port(port);
    tracing::info!(addr, "warehouse SQL over the PostgreSQL protocol");
    datafusion_postgres::serve_with_handlers(handlers, &opts).await?;
    Ok(())
}

/// `datafusion-postgres`'s query service behind our sign-in.
struct Handlers {
    session: Arc<DfSessionService>,
    cancel: Arc<DefaultCancelHandler>,
    startup: Arc<TokenSignIn>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Sign-in by cleartext password, the password being an access token.
struct TokenSignIn {
    app: AppState,
    params: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
}

/// The roles that may query the warehouse.
const SQL_ROLES: [Role; 3] = [Role::Analyst, Role::FraudAnalyst, Role::Admin];

fn refused(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

impl TokenSignIn {
    /// The user id of a token that may use the warehouse, or why not.
    async fn check(&self, token: &str) -> PgWireResult<String> {
        let user = services::http::authenticate(&self.app, token.trim())
            .await
            .map_err(|p| {
                refused(
                    "28P01",
                    format!(
                        "{}: the password must be a Shopstream access token (POST /v1/auth/login)",
                        p.detail
                    ),
                )
            })?;
        if !SQL_ROLES.iter().any(|r| user.has(*r)) {
            return Err(refused(
                "28000",
                "the warehouse needs the analyst, fraud_analyst or admin role".into(),
            ));
        }
        Ok(user.user_id.to_string())
    }
}

#[async_trait]
impl StartupHandler for TokenSignIn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let user_id = self.check(&pwd.password).await?;
                client.metadata_mut().insert(USER_KEY.into(), user_id);
                let (pid, secret) = self.pids.generate(&*client);
                client.set_pid_and_secret_key(pid, secret.clone());
                // So a client's cancel request reaches its running query.
                let (handle, guard) = self.connections.register(pid, secret);
                client.session_extensions().insert(handle);
                client.session_extensions().insert(guard);
                finish_authentication(client, &self.params).await?;
            }
            _ => {}
        }
        Ok(())
    }
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
        let user = client.metadata().get(USER_KEY).map_or("?", |u| u.as_str());
        let who = format!("pg:{user}@{}", client.socket_addr());
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
