//! `updraft:platform/sql`.

use std::sync::Arc;

use updraft_store::{SqlError, SqlLoad, SqlStore, Value};
use wasmtime::component::Resource;

use super::generated::updraft::platform::sql::{self as wit, Error};
use updraft_manifest::allow::SQL;
use wasmtime::component::Linker;

use super::{Binding, BindingCtx};
use crate::state::InvocationState;

/// Links `updraft:platform/sql`.
pub(crate) fn link(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)
}

/// An open database, as a guest holds it.
pub struct Connection {
    store: Arc<dyn SqlStore>,
}

/// A streamed load, as a guest holds it. Empty while a push runs, and for good once a push
/// was cut off (the load's spool is then incomplete).
pub struct Loader {
    load: Option<Box<dyn SqlLoad>>,
}

/// What a guest gets for a load it can no longer use.
fn load_interrupted() -> Error {
    Error::Other("this load was interrupted (an earlier push was cut off); start a new load".into())
}

fn to_store(v: wit::Value) -> Value {
    match v {
        wit::Value::Null => Value::Null,
        wit::Value::Integer(i) => Value::Int(i),
        wit::Value::Real(f) => Value::Float(f),
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Blob(b) => Value::Blob(b),
    }
}

fn to_wit(v: Value) -> wit::Value {
    match v {
        Value::Null => wit::Value::Null,
        Value::Int(i) => wit::Value::Integer(i),
        Value::Float(f) => wit::Value::Real(f),
        Value::Text(s) => wit::Value::Text(s),
        Value::Blob(b) => wit::Value::Blob(b),
    }
}

fn error(e: SqlError) -> Error {
    match e {
        SqlError::Statement { .. } | SqlError::ParameterCount { .. } => {
            Error::Invalid(e.to_string())
        }
        SqlError::Refused { .. } => Error::AccessDenied(e.to_string()),
        SqlError::Backend { .. } => Error::Other(e.to_string()),
    }
}

impl BindingCtx<'_> {
    /// The guest's error for `e`; a refused statement is logged against the invocation.
    fn sql_error(&self, e: SqlError) -> Error {
        if let SqlError::Refused { .. } = &e {
            tracing::warn!(
                function = %self.caller.function,
                invocation = %self.caller.invocation,
                "{e}"
            );
        }
        error(e)
    }

    fn connection(&self, c: &Resource<Connection>) -> wasmtime::Result<Arc<dyn SqlStore>> {
        Ok(self.table.get(c)?.store.clone())
    }
}

impl wit::Host for BindingCtx<'_> {}

impl wit::HostConnection for BindingCtx<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let store = match self
            .resources
            .open::<dyn SqlStore>(&SQL, self.caller, &label)
        {
            Ok(s) => s,
            Err(denial) => {
                return Ok(Err(if denial.undeclared {
                    Error::NoSuchDatabase(denial.message)
                } else {
                    Error::AccessDenied(denial.message)
                }));
            }
        };
        Ok(Ok(self.table.push(Connection { store })?))
    }

    async fn execute(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let store = self.connection(&c)?;
        let params = params.into_iter().map(to_store).collect();
        Ok(store
            .execute(&statement, params)
            .await
            .map_err(|e| self.sql_error(e)))
    }

    async fn query(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<wit::RowSet, Error>> {
        let store = self.connection(&c)?;
        let params = params.into_iter().map(to_store).collect();
        Ok(store
            .query(&statement, params)
            .await
            .map(|rows| wit::RowSet {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|r| r.into_iter().map(to_wit).collect())
                    .collect(),
            })
            .map_err(|e| self.sql_error(e)))
    }

    async fn execute_many(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        rows: Vec<Vec<wit::Value>>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let store = self.connection(&c)?;
        let rows = rows
            .into_iter()
            .map(|r| r.into_iter().map(to_store).collect())
            .collect();
        Ok(store
            .execute_many(&statement, rows)
            .await
            .map_err(|e| self.sql_error(e)))
    }

    async fn batch(
        &mut self,
        c: Resource<Connection>,
        statements: Vec<(String, Vec<wit::Value>)>,
    ) -> wasmtime::Result<Result<Vec<u64>, Error>> {
        let store = self.connection(&c)?;
        let statements = statements
            .into_iter()
            .map(|(sql, params)| (sql, params.into_iter().map(to_store).collect()))
            .collect();
        Ok(store.batch(statements).await.map_err(|e| self.sql_error(e)))
    }

    async fn load(
        &mut self,
        c: Resource<Connection>,
        statement: String,
    ) -> wasmtime::Result<Result<Resource<Loader>, Error>> {
        let store = self.connection(&c)?;
        match store.load(&statement).await {
            Ok(load) => Ok(Ok(self.table.push(Loader { load: Some(load) })?)),
            Err(e) => Ok(Err(self.sql_error(e))),
        }
    }

    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl wit::HostLoader for BindingCtx<'_> {
    async fn push(
        &mut self,
        l: Resource<Loader>,
        rows: Vec<Vec<wit::Value>>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let Some(mut load) = self.table.get_mut(&l)?.load.take() else {
            return Ok(Err(load_interrupted()));
        };
        let rows = rows
            .into_iter()
            .map(|r| r.into_iter().map(to_store).collect())
            .collect();
        let pushed = load.push(rows).await;
        self.table.get_mut(&l)?.load = Some(load);
        Ok(pushed.map_err(|e| self.sql_error(e)))
    }

    async fn commit(&mut self, l: Resource<Loader>) -> wasmtime::Result<Result<u64, Error>> {
        let Some(load) = self.table.delete(l)?.load else {
            return Ok(Err(load_interrupted()));
        };
        Ok(load.commit().await.map_err(|e| self.sql_error(e)))
    }

    async fn drop(&mut self, l: Resource<Loader>) -> wasmtime::Result<()> {
        // Dropping the load discards its spooled rows: nothing was committed.
        self.table.delete(l)?;
        Ok(())
    }
}
