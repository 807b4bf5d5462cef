//! What the write side publishes and the read side consumes: a contact snapshot per change.

use serde::{Deserialize, Serialize};

/// A contact's postal address (a child record in the write model).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub postcode: String,
    pub country: String,
}

/// A contact as the write model holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub address: Address,
}

/// The data of every `contact.*` event: the contact after the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContactChanged {
    pub id: String,
    /// Increases with every change of this contact.
    pub version: i64,
    /// `None` for `contact.deleted`.
    pub contact: Option<Contact>,
}
