//! Allow-lists: the resources a function may reach, declared once here.
//!
//! Each entry ties a function key (`kv = [...]`) to the resource table its names must be
//! declared in (`[kv.<label>]`) and says how a denial reads. Validation, the runtime's
//! denials, the admin API and `updraft ls` all read this list, so a new binding adds one
//! entry here and one arm in [`Function::allowed`] / [`Manifest::declared`].

use crate::types::{Function, Manifest};

/// One allow-list a function may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowList {
    /// The function's key, e.g. `enqueue`.
    pub key: &'static str,
    /// The resource table its names are declared in, e.g. `queue` for `[queue.<name>]`.
    pub table: &'static str,
    /// What one resource is called in messages, e.g. `kv store`.
    pub noun: &'static str,
    /// What the function is refused, before the name, e.g. `open kv store` or `enqueue to`.
    pub action: &'static str,
}

/// `kv = [...]`: key-value stores.
pub const KV: AllowList = AllowList {
    key: "kv",
    table: "kv",
    noun: "kv store",
    action: "open kv store",
};
/// `sql = [...]`: SQL databases.
pub const SQL: AllowList = AllowList {
    key: "sql",
    table: "sql",
    noun: "sql database",
    action: "use sql database",
};
/// `buckets = [...]`: buckets of objects.
pub const BUCKETS: AllowList = AllowList {
    key: "buckets",
    table: "bucket",
    noun: "bucket",
    action: "use bucket",
};
/// `enqueue = [...]`: queues it may send to.
pub const ENQUEUE: AllowList = AllowList {
    key: "enqueue",
    table: "queue",
    noun: "queue",
    action: "enqueue to",
};
/// `publish = [...]`: topics it may publish to.
pub const PUBLISH: AllowList = AllowList {
    key: "publish",
    table: "topic",
    noun: "topic",
    action: "publish to",
};
/// `append = [...]`: streams it may append to.
pub const APPEND: AllowList = AllowList {
    key: "append",
    table: "stream",
    noun: "stream",
    action: "append to",
};

/// Every allow-list, in the order the admin API and `updraft ls` show them.
pub const ALLOW_LISTS: &[AllowList] = &[KV, SQL, BUCKETS, ENQUEUE, PUBLISH, APPEND];

impl AllowList {
    /// The message for a name no resource table declares.
    pub fn undeclared(&self, name: &str) -> String {
        format!(
            "{} `{name}` is not declared; add a `[{}.{name}]` table to updraft.toml",
            self.noun, self.table
        )
    }

    /// The message for a declared name the function does not list.
    pub fn not_listed(&self, function: &str, name: &str) -> String {
        format!(
            "function `{function}` may not {} `{name}`; add it to the function's `{} = [...]`",
            self.action, self.key
        )
    }
}

impl Function {
    /// The names the function lists under `list.key`.
    pub fn allowed(&self, list: &AllowList) -> &[String] {
        match list.key {
            "kv" => &self.kv,
            "sql" => &self.sql,
            "buckets" => &self.buckets,
            "enqueue" => &self.enqueue,
            "publish" => &self.publish,
            "append" => &self.append,
            _ => &[],
        }
    }
}

impl Manifest {
    /// The names declared in `list.table`, in order.
    pub fn declared(&self, list: &AllowList) -> Vec<&str> {
        fn keys<V>(m: &std::collections::BTreeMap<String, V>) -> Vec<&str> {
            m.keys().map(String::as_str).collect()
        }
        match list.table {
            "kv" => keys(&self.kv),
            "sql" => keys(&self.sql),
            "bucket" => keys(&self.bucket),
            "queue" => keys(&self.queue),
            "topic" => keys(&self.topic),
            "stream" => keys(&self.stream),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allow_list_reads_its_own_function_key_and_table() {
        let m = Manifest::parse(
            r#"
[app]
name = "a"
[kv.k]
[sql.s]
[bucket.b]
[queue.q]
[topic.t]
[stream.st]
[function.f]
source = "f.wasm"
kv = ["k"]
sql = ["s"]
buckets = ["b"]
enqueue = ["q"]
publish = ["t"]
append = ["st"]
"#,
        )
        .expect("manifest");
        let f = &m.function["f"];
        for list in ALLOW_LISTS {
            let listed = f.allowed(list);
            assert_eq!(listed.len(), 1, "`{}` reads its own key", list.key);
            assert_eq!(
                m.declared(list),
                vec![listed[0].as_str()],
                "`{}` reads `[{}.*]`",
                list.key,
                list.table
            );
        }
    }
}
