//! The per-query time limit inside execution: a physical optimizer rule puts a
//! [`DeadlineExec`] on top of every plan, whose output fails once the query has run for
//! `query_timeout_secs`; dropping the stream cancels the operators under it. This bounds
//! queries whatever front runs them — the PostgreSQL protocol, where the result streams to
//! the client, as much as `POST /v1/sql` and the CLI (which also time out the whole call).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Future as _, Stream};

/// Wraps the root of every physical plan in a [`DeadlineExec`].
#[derive(Debug)]
pub struct Deadline(pub Duration);

impl PhysicalOptimizerRule for Deadline {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if plan.name() == "DeadlineExec" {
            return Ok(plan);
        }
        Ok(Arc::new(DeadlineExec::new(plan, self.0)))
    }

    fn name(&self) -> &str {
        "deadline"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through until `limit` after execution started, then fails.
#[derive(Debug)]
pub struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    limit: Duration,
    properties: Arc<PlanProperties>,
}

impl DeadlineExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, limit: Duration) -> Self {
        let properties = input.properties().clone();
        DeadlineExec {
            input,
            limit,
            properties,
        }
    }
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadlineExec: limit={:?}", self.limit)
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "DeadlineExec takes one child".into(),
            ));
        }
        Ok(Arc::new(DeadlineExec::new(children.remove(0), self.limit)))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        Ok(Box::pin(DeadlineStream {
            inner: self.input.execute(partition, ctx)?,
            sleep: Box::pin(tokio::time::sleep(self.limit)),
            limit: self.limit,
            expired: false,
        }))
    }
}

struct DeadlineStream {
    inner: SendableRecordBatchStream,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    expired: bool,
}

impl Stream for DeadlineStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(DataFusionError::ResourcesExhausted(format!(
                "the query ran longer than {:?} (warehouse.query_timeout_secs) and was cancelled",
                self.limit
            )))));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
