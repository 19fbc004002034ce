//! The customers domain's surface: its use cases ([`Customers`]), accounts,
//! roles and sessions, and its events.

use crate::event;
use mercato_core::{Error, Id, Millis};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Role {
        if s == "admin" { Role::Admin } else { Role::Customer }
    }
}

/// Who is calling: established from a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub customer_id: Id,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub id: Id,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
}

/// A session opened by a login.
pub struct LoginOutcome {
    pub access_token: String,
    pub expires_in: u64,
    pub customer: Customer,
}

/// What the customers domain does for the HTTP edge: accounts and the
/// sessions that authenticate their requests.
#[async_trait::async_trait]
pub trait Customers: Send + Sync {
    /// Creates a customer account; its access token and id.
    async fn register(&self, email: &str, password: &str, name: &str) -> Result<(String, String), Error>;
    /// Opens a session; `address` is the client's, for throttling.
    async fn login(&self, email: &str, password: &str, address: &str) -> Result<LoginOutcome, Error>;
    /// Who holds `token`, if it is a live session.
    async fn authenticate(&self, token: &str) -> Result<Principal, Error>;
    async fn logout(&self, token: &str) -> Result<(), Error>;
    async fn get(&self, id: Id) -> Result<Customer, Error>;
}

/// `customer.registered`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerRegistered {
    #[schema(value_type = String)]
    pub id: Id,
}
event!(CustomerRegistered, aggregate "customer", "customer.registered", version 1, |e| e.id);
