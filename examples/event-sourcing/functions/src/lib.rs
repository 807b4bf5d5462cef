//! The account events: what `ledger` appends to the `accounts` topic.

use serde::{Deserialize, Serialize};

/// `account.opened` data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opened {
    pub account: String,
    pub owner: String,
}

/// `account.deposited` and `account.withdrawn` data. Amounts are in cents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Movement {
    pub account: String,
    pub amount: i64,
}

/// The event type of an opening.
pub const OPENED: &str = "account.opened";
/// The event type of a deposit.
pub const DEPOSITED: &str = "account.deposited";
/// The event type of a withdrawal.
pub const WITHDRAWN: &str = "account.withdrawn";
